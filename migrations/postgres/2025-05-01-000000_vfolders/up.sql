-- Virtual folders for `MetadataStore`, on the tables of the deployment migration: folders keep their owner by
-- users.uuid or groups.id, shares by users.uuid, invitations by e-mail. Added here: an insertion counter that
-- orders invitations made in the same microsecond, one pending invitation per folder and invitee, the byte quota of
-- a quota scope, and the folders a session mounts.

ALTER TABLE vfolder_invitations ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE;
CREATE UNIQUE INDEX ux_vfolder_invitations_pending ON vfolder_invitations (vfolder, invitee) WHERE state = 'pending';

-- A user or group that owns folders cannot be deleted (the store checks first to report Conflict; the foreign keys
-- catch a concurrent insert), since the folders' files would be left without a record.
ALTER TABLE vfolders DROP CONSTRAINT vfolders_user_fkey;
ALTER TABLE vfolders ADD CONSTRAINT vfolders_user_fkey FOREIGN KEY ("user") REFERENCES users (uuid);
ALTER TABLE vfolders DROP CONSTRAINT vfolders_group_fkey;
ALTER TABLE vfolders ADD CONSTRAINT vfolders_group_fkey FOREIGN KEY ("group") REFERENCES groups (id);

-- The store records who created a folder, always.
ALTER TABLE vfolders ALTER COLUMN creator SET NOT NULL;

ALTER TABLE keypair_resource_policies ADD COLUMN max_quota_scope_size BIGINT CHECK (max_quota_scope_size >= 0);
ALTER TABLE keypair_resource_policies ADD CONSTRAINT ck_keypair_resource_policies_max_vfolder_count
    CHECK (max_vfolder_count >= 0);

ALTER TABLE sessions ADD COLUMN vfolder_mounts JSONB NOT NULL DEFAULT '[]'::jsonb;
