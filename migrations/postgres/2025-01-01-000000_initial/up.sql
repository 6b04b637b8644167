-- The initial schema of the PostgreSQL metadata store: the records `MetadataStore` reads and writes.
--
-- Conventions: ids are `uuid` (agents keep their text ids); timestamps are `timestamptz`, which keep microseconds,
-- the precision every store promises; resource slots are `jsonb` objects whose amounts are decimal *strings*
-- (`{"cpu": "1.5", "mem": "1073741824"}`), exactly what `ResourceSlots` serializes, so they round-trip without
-- float rounding; image lists, environments and status histories are `jsonb` too; statuses are their wire names.
-- `seq` columns are insertion counters that order rows created in the same microsecond.

CREATE TABLE domains (
    name                       TEXT PRIMARY KEY,
    description                TEXT,
    is_active                  BOOLEAN NOT NULL DEFAULT TRUE,
    total_resource_slots       JSONB NOT NULL DEFAULT '{}',
    allowed_vfolder_hosts      JSONB NOT NULL DEFAULT '{}',
    allowed_docker_registries  JSONB NOT NULL DEFAULT '[]',
    integration_id             TEXT,
    created_at                 TIMESTAMPTZ NOT NULL DEFAULT now(),
    modified_at                TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE keypair_resource_policies (
    name                        TEXT PRIMARY KEY,
    total_resource_slots        JSONB NOT NULL DEFAULT '{}',
    max_session_lifetime        BIGINT NOT NULL DEFAULT 0 CHECK (max_session_lifetime >= 0),
    max_concurrent_sessions     BIGINT NOT NULL DEFAULT 30 CHECK (max_concurrent_sessions >= 0),
    max_containers_per_session  BIGINT NOT NULL DEFAULT 1 CHECK (max_containers_per_session >= 0),
    idle_timeout                BIGINT NOT NULL DEFAULT 0 CHECK (idle_timeout >= 0),
    max_pending_session_count   BIGINT CHECK (max_pending_session_count >= 0),
    max_vfolder_count           BIGINT NOT NULL DEFAULT 0,
    allowed_vfolder_hosts       JSONB NOT NULL DEFAULT '[]',
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE scaling_groups (
    name            TEXT PRIMARY KEY,
    description     TEXT,
    is_active       BOOLEAN NOT NULL DEFAULT TRUE,
    driver          TEXT NOT NULL DEFAULT 'static',
    driver_opts     JSONB NOT NULL DEFAULT '{}',
    scheduler       TEXT NOT NULL DEFAULT 'fifo',
    scheduler_opts  JSONB NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Projects; Backend.AI calls them groups.
CREATE TABLE groups (
    id                    UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name                  TEXT NOT NULL,
    domain_name           TEXT NOT NULL REFERENCES domains (name),
    description           TEXT,
    is_active             BOOLEAN NOT NULL DEFAULT TRUE,
    total_resource_slots  JSONB NOT NULL DEFAULT '{}',
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    modified_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (domain_name, name)
);

CREATE TABLE users (
    uuid          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    username      TEXT NOT NULL UNIQUE,
    email         TEXT NOT NULL UNIQUE,
    password      TEXT,
    full_name     TEXT,
    description   TEXT,
    domain_name   TEXT NOT NULL REFERENCES domains (name),
    role          TEXT NOT NULL DEFAULT 'user',
    status        TEXT NOT NULL DEFAULT 'active',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    modified_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ix_users_domain_name ON users (domain_name);

-- A user belongs to groups of its own domain; deleting a user drops its memberships, and a group with members
-- cannot be deleted (the store checks first to report Conflict).
CREATE TABLE association_groups_users (
    group_id  UUID NOT NULL REFERENCES groups (id),
    user_id   UUID NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX ix_association_groups_users_user_id ON association_groups_users (user_id);

-- `user_id` is the owner's e-mail, as in Backend.AI. No foreign keys to users or resource policies: keypairs may be
-- created on their own (the store checks references on delete instead).
CREATE TABLE keypairs (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    access_key       TEXT PRIMARY KEY,
    secret_key       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    role             TEXT NOT NULL,
    is_active        BOOLEAN NOT NULL,
    rate_limit       BIGINT NOT NULL,
    resource_policy  TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    last_used        TIMESTAMPTZ,
    num_queries      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX ix_keypairs_user_id ON keypairs (user_id);
CREATE INDEX ix_keypairs_resource_policy ON keypairs (resource_policy);
CREATE INDEX ix_keypairs_created_at ON keypairs (created_at, seq);

-- An agent reports its scaling group in its heartbeat, so there is no foreign key to scaling_groups.
CREATE TABLE agents (
    id               TEXT PRIMARY KEY,
    status           TEXT NOT NULL,
    addr             TEXT NOT NULL,
    scaling_group    TEXT NOT NULL,
    architecture     TEXT NOT NULL,
    available_slots  JSONB NOT NULL,
    occupied_slots   JSONB NOT NULL,
    images           JSONB NOT NULL,
    schedulable      BOOLEAN NOT NULL,
    runtime          TEXT NOT NULL,
    version          TEXT NOT NULL,
    first_contact    TIMESTAMPTZ NOT NULL,
    lost_at          TIMESTAMPTZ
);
CREATE INDEX ix_agents_status ON agents (status);
CREATE INDEX ix_agents_scaling_group ON agents (scaling_group);

CREATE TABLE sessions (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id               UUID PRIMARY KEY,
    name             TEXT NOT NULL,
    access_key       TEXT NOT NULL,
    domain_name      TEXT NOT NULL,
    group_name       TEXT NOT NULL,
    session_type     TEXT NOT NULL,
    image            TEXT NOT NULL,
    cluster_size     BIGINT NOT NULL,
    status           TEXT NOT NULL,
    status_info      TEXT,
    status_history   JSONB NOT NULL,
    requested_slots  JSONB NOT NULL,
    environ          JSONB NOT NULL,
    tag              TEXT,
    scaling_group    TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    startup_command  TEXT,
    result           TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    terminated_at    TIMESTAMPTZ
);
-- A name is unique among an owner's sessions that are not final; the store checks first to report AlreadyExists,
-- and this index makes the rule hold under concurrent writers.
CREATE UNIQUE INDEX ux_sessions_live_name ON sessions (access_key, name)
    WHERE status NOT IN ('TERMINATED', 'CANCELLED');
CREATE INDEX ix_sessions_access_key_name ON sessions (access_key, name, created_at);
CREATE INDEX ix_sessions_access_key_created_at ON sessions (access_key, created_at);
CREATE INDEX ix_sessions_status_created_at ON sessions (status, created_at);
CREATE INDEX ix_sessions_created_at ON sessions (created_at, seq);

CREATE TABLE kernels (
    id                UUID PRIMARY KEY,
    session_id        UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    access_key        TEXT NOT NULL,
    cluster_role      TEXT NOT NULL,
    cluster_idx       BIGINT NOT NULL,
    cluster_hostname  TEXT NOT NULL,
    image             TEXT NOT NULL,
    agent_id          TEXT,
    agent_addr        TEXT,
    container_id      TEXT,
    status            TEXT NOT NULL,
    status_info       TEXT,
    status_history    JSONB NOT NULL,
    requested_slots   JSONB NOT NULL,
    occupied_slots    JSONB NOT NULL,
    exit_code         INTEGER,
    created_at        TIMESTAMPTZ NOT NULL,
    terminated_at     TIMESTAMPTZ
);
CREATE INDEX ix_kernels_session_id ON kernels (session_id);
CREATE INDEX ix_kernels_agent_id_status ON kernels (agent_id, status);
CREATE INDEX ix_kernels_status ON kernels (status);
