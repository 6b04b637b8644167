-- Virtual folders, as in the PostgreSQL store: a folder is owned by a user or by a group (project), never both, and
-- is keyed by its id (its directory's name on the volume). Shares and invitations go with their folder; a user or
-- group that owns folders cannot be deleted (the store checks first to report Conflict), since the folders' files
-- would be left without a record.

CREATE TABLE vfolders (
    id              TEXT PRIMARY KEY NOT NULL,
    host            TEXT NOT NULL,
    name            TEXT NOT NULL,
    quota_scope_id  TEXT NOT NULL,
    usage_mode      TEXT NOT NULL DEFAULT 'general',
    permission      TEXT NOT NULL DEFAULT 'rw',
    ownership_type  TEXT NOT NULL CHECK (ownership_type IN ('user', 'group')),
    "user"          TEXT REFERENCES users (uuid),
    "group"         TEXT REFERENCES groups (id),
    creator         TEXT NOT NULL,
    max_size        INTEGER,
    cloneable       INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    CHECK ((ownership_type = 'user' AND "user" IS NOT NULL AND "group" IS NULL)
        OR (ownership_type = 'group' AND "group" IS NOT NULL AND "user" IS NULL))
);
-- Names are unique per owner; the store checks first to report AlreadyExists.
CREATE UNIQUE INDEX ux_vfolders_user_name ON vfolders ("user", name) WHERE "user" IS NOT NULL;
CREATE UNIQUE INDEX ux_vfolders_group_name ON vfolders ("group", name) WHERE "group" IS NOT NULL;
CREATE INDEX ix_vfolders_host ON vfolders (host);

-- A folder shared with another user.
CREATE TABLE vfolder_permissions (
    vfolder     TEXT NOT NULL REFERENCES vfolders (id) ON DELETE CASCADE,
    "user"      TEXT NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    permission  TEXT NOT NULL DEFAULT 'rw',
    PRIMARY KEY (vfolder, "user")
);
CREATE INDEX ix_vfolder_permissions_user ON vfolder_permissions ("user");

-- Inviter and invitee are e-mails; an invitee needs a user record only to accept.
CREATE TABLE vfolder_invitations (
    id           TEXT PRIMARY KEY NOT NULL,
    permission   TEXT NOT NULL DEFAULT 'rw',
    inviter      TEXT NOT NULL,
    invitee      TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    vfolder      TEXT NOT NULL REFERENCES vfolders (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    modified_at  TEXT NOT NULL
);
-- At most one pending invitation per folder and invitee.
CREATE UNIQUE INDEX ux_vfolder_invitations_pending ON vfolder_invitations (vfolder, invitee) WHERE state = 'pending';
CREATE INDEX ix_vfolder_invitations_invitee_state ON vfolder_invitations (invitee, state);

-- Byte quota per quota scope (NULL: unlimited); `max_vfolder_count` exists since the initial schema.
ALTER TABLE keypair_resource_policies ADD COLUMN max_quota_scope_size INTEGER;

-- The folders a session mounts, resolved at creation: a JSON array of mounts.
ALTER TABLE sessions ADD COLUMN vfolder_mounts TEXT NOT NULL DEFAULT '[]';
