ALTER TABLE sessions DROP COLUMN vfolder_mounts;
ALTER TABLE keypair_resource_policies DROP COLUMN max_quota_scope_size;
DROP TABLE vfolder_invitations;
DROP TABLE vfolder_permissions;
DROP TABLE vfolders;
