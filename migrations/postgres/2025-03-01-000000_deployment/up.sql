-- Tables a real deployment needs that `MetadataStore` does not use yet: which scaling groups serve which domains,
-- groups and keypairs; session dependencies; virtual folders with their shares and invitations; per-kernel usage.

CREATE TABLE sgroups_for_domains (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    scaling_group  TEXT NOT NULL REFERENCES scaling_groups (name) ON DELETE CASCADE,
    domain         TEXT NOT NULL REFERENCES domains (name) ON DELETE CASCADE,
    UNIQUE (scaling_group, domain)
);
CREATE INDEX ix_sgroups_for_domains_domain ON sgroups_for_domains (domain);

CREATE TABLE sgroups_for_groups (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    scaling_group  TEXT NOT NULL REFERENCES scaling_groups (name) ON DELETE CASCADE,
    "group"        UUID NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    UNIQUE (scaling_group, "group")
);
CREATE INDEX ix_sgroups_for_groups_group ON sgroups_for_groups ("group");

CREATE TABLE sgroups_for_keypairs (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    scaling_group  TEXT NOT NULL REFERENCES scaling_groups (name) ON DELETE CASCADE,
    access_key     TEXT NOT NULL REFERENCES keypairs (access_key) ON DELETE CASCADE,
    UNIQUE (scaling_group, access_key)
);
CREATE INDEX ix_sgroups_for_keypairs_access_key ON sgroups_for_keypairs (access_key);

-- A session starts only after the sessions it depends on have finished successfully.
CREATE TABLE session_dependencies (
    session_id  UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    depends_on  UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    PRIMARY KEY (session_id, depends_on),
    CHECK (session_id <> depends_on)
);
CREATE INDEX ix_session_dependencies_depends_on ON session_dependencies (depends_on);

-- A virtual folder is owned by a user or by a group (project), never both.
CREATE TABLE vfolders (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    host            TEXT NOT NULL,
    name            TEXT NOT NULL,
    quota_scope_id  TEXT NOT NULL,
    usage_mode      TEXT NOT NULL DEFAULT 'general',
    permission      TEXT NOT NULL DEFAULT 'rw',
    ownership_type  TEXT NOT NULL CHECK (ownership_type IN ('user', 'group')),
    "user"          UUID REFERENCES users (uuid) ON DELETE CASCADE,
    "group"         UUID REFERENCES groups (id) ON DELETE CASCADE,
    creator         TEXT,
    max_files       BIGINT NOT NULL DEFAULT 0,
    max_size        BIGINT,
    cloneable       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used       TIMESTAMPTZ,
    status          TEXT NOT NULL DEFAULT 'ready',
    CHECK ((ownership_type = 'user' AND "user" IS NOT NULL AND "group" IS NULL)
        OR (ownership_type = 'group' AND "group" IS NOT NULL AND "user" IS NULL))
);
-- Names are unique per owner among folders that are not deleted.
CREATE UNIQUE INDEX ux_vfolders_user_name ON vfolders ("user", name) WHERE "user" IS NOT NULL AND status NOT LIKE 'delete%';
CREATE UNIQUE INDEX ux_vfolders_group_name ON vfolders ("group", name) WHERE "group" IS NOT NULL AND status NOT LIKE 'delete%';
CREATE INDEX ix_vfolders_host ON vfolders (host);
CREATE INDEX ix_vfolders_status ON vfolders (status);

-- A folder shared with another user.
CREATE TABLE vfolder_permissions (
    vfolder     UUID NOT NULL REFERENCES vfolders (id) ON DELETE CASCADE,
    "user"      UUID NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    permission  TEXT NOT NULL DEFAULT 'rw',
    PRIMARY KEY (vfolder, "user")
);
CREATE INDEX ix_vfolder_permissions_user ON vfolder_permissions ("user");

CREATE TABLE vfolder_invitations (
    id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    permission   TEXT NOT NULL DEFAULT 'rw',
    inviter      TEXT NOT NULL,
    invitee      TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    vfolder      UUID NOT NULL REFERENCES vfolders (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    modified_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ix_vfolder_invitations_invitee_state ON vfolder_invitations (invitee, state);
CREATE INDEX ix_vfolder_invitations_vfolder ON vfolder_invitations (vfolder);

-- What a kernel used, recorded when it ends (or periodically while it runs). `cpu_used` is CPU time in
-- milliseconds; accelerator and other metrics go into `extra`.
CREATE TABLE kernel_usage (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kernel_id       UUID NOT NULL REFERENCES kernels (id) ON DELETE CASCADE,
    session_id      UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    access_key      TEXT NOT NULL,
    agent           TEXT,
    started_at      TIMESTAMPTZ,
    ended_at        TIMESTAMPTZ,
    cpu_used        BIGINT NOT NULL DEFAULT 0 CHECK (cpu_used >= 0),
    mem_max_bytes   BIGINT NOT NULL DEFAULT 0 CHECK (mem_max_bytes >= 0),
    io_read_bytes   BIGINT NOT NULL DEFAULT 0 CHECK (io_read_bytes >= 0),
    io_write_bytes  BIGINT NOT NULL DEFAULT 0 CHECK (io_write_bytes >= 0),
    extra           JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX ix_kernel_usage_kernel_id ON kernel_usage (kernel_id);
CREATE INDEX ix_kernel_usage_session_id ON kernel_usage (session_id);
CREATE INDEX ix_kernel_usage_access_key_started_at ON kernel_usage (access_key, started_at);
