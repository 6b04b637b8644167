-- Administration: the fields of keypair resource policies the model keeps, and group (project) membership.

ALTER TABLE keypair_resource_policies ADD COLUMN max_pending_session_count INTEGER;
ALTER TABLE keypair_resource_policies ADD COLUMN allowed_vfolder_hosts TEXT NOT NULL DEFAULT '[]';

-- A user belongs to groups of its own domain; deleting a user drops its memberships, and a group with members
-- cannot be deleted (the store checks first to report Conflict).
CREATE TABLE association_groups_users (
    group_id  TEXT NOT NULL REFERENCES groups (id),
    user_id   TEXT NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX ix_association_groups_users_user_id ON association_groups_users (user_id);
CREATE INDEX ix_keypairs_resource_policy ON keypairs (resource_policy);
