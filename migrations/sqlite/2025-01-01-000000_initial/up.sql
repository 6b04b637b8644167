-- The initial schema of the embedded (SQLite) metadata store.
--
-- Conventions: timestamps are TEXT in RFC 3339, UTC, with exactly six fractional digits and a `Z`
-- (`2025-01-01T00:00:00.000000Z`), so they sort as text in time order; resource slots, image lists, environments and
-- status histories are JSON text; booleans are INTEGER 0/1; statuses are their wire names (`RUNNING`).

CREATE TABLE domains (
    name                  TEXT PRIMARY KEY NOT NULL,
    description           TEXT,
    is_active             INTEGER NOT NULL DEFAULT 1,
    total_resource_slots  TEXT NOT NULL DEFAULT '{}',
    allowed_docker_registries TEXT NOT NULL DEFAULT '[]',
    created_at            TEXT NOT NULL
);

CREATE TABLE keypair_resource_policies (
    name                      TEXT PRIMARY KEY NOT NULL,
    total_resource_slots      TEXT NOT NULL DEFAULT '{}',
    max_session_lifetime      INTEGER NOT NULL DEFAULT 0,
    max_concurrent_sessions   INTEGER NOT NULL DEFAULT 30,
    max_containers_per_session INTEGER NOT NULL DEFAULT 1,
    idle_timeout              INTEGER NOT NULL DEFAULT 0,
    max_vfolder_count         INTEGER NOT NULL DEFAULT 0,
    created_at                TEXT NOT NULL
);

CREATE TABLE scaling_groups (
    name            TEXT PRIMARY KEY NOT NULL,
    description     TEXT,
    is_active       INTEGER NOT NULL DEFAULT 1,
    driver          TEXT NOT NULL DEFAULT 'static',
    scheduler       TEXT NOT NULL DEFAULT 'fifo',
    scheduler_opts  TEXT NOT NULL DEFAULT '{}',
    created_at      TEXT NOT NULL
);

-- Projects; Backend.AI calls them groups.
CREATE TABLE groups (
    id                    TEXT PRIMARY KEY NOT NULL,
    name                  TEXT NOT NULL,
    domain_name           TEXT NOT NULL REFERENCES domains (name),
    description           TEXT,
    is_active             INTEGER NOT NULL DEFAULT 1,
    total_resource_slots  TEXT NOT NULL DEFAULT '{}',
    created_at            TEXT NOT NULL,
    UNIQUE (domain_name, name)
);

CREATE TABLE users (
    uuid          TEXT PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    email         TEXT NOT NULL UNIQUE,
    password      TEXT,
    domain_name   TEXT NOT NULL REFERENCES domains (name),
    role          TEXT NOT NULL DEFAULT 'user',
    status        TEXT NOT NULL DEFAULT 'active',
    created_at    TEXT NOT NULL
);

-- No foreign key to users or keypair_resource_policies yet: those tables are filled by later work, and keypairs
-- are created on their own until then.
CREATE TABLE keypairs (
    access_key       TEXT PRIMARY KEY NOT NULL,
    secret_key       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    role             TEXT NOT NULL,
    is_active        INTEGER NOT NULL,
    rate_limit       INTEGER NOT NULL,
    resource_policy  TEXT NOT NULL,
    created_at       TEXT NOT NULL
);
CREATE INDEX ix_keypairs_user_id ON keypairs (user_id);
CREATE INDEX ix_keypairs_created_at ON keypairs (created_at);

CREATE TABLE agents (
    id               TEXT PRIMARY KEY NOT NULL,
    status           TEXT NOT NULL,
    addr             TEXT NOT NULL,
    scaling_group    TEXT NOT NULL,
    architecture     TEXT NOT NULL,
    available_slots  TEXT NOT NULL,
    occupied_slots   TEXT NOT NULL,
    images           TEXT NOT NULL,
    schedulable      INTEGER NOT NULL,
    runtime          TEXT NOT NULL,
    version          TEXT NOT NULL,
    first_contact    TEXT NOT NULL,
    lost_at          TEXT
);
CREATE INDEX ix_agents_status ON agents (status);

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    access_key       TEXT NOT NULL,
    domain_name      TEXT NOT NULL,
    group_name       TEXT NOT NULL,
    session_type     TEXT NOT NULL,
    image            TEXT NOT NULL,
    cluster_size     INTEGER NOT NULL,
    status           TEXT NOT NULL,
    status_info      TEXT,
    status_history   TEXT NOT NULL,
    requested_slots  TEXT NOT NULL,
    environ          TEXT NOT NULL,
    tag              TEXT,
    scaling_group    TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    startup_command  TEXT,
    result           TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    terminated_at    TEXT
);
-- A name is unique among an owner's sessions that are not final; the store checks first to report AlreadyExists,
-- and this index makes the rule hold whatever writes the table.
CREATE UNIQUE INDEX ux_sessions_live_name ON sessions (access_key, name)
    WHERE status NOT IN ('TERMINATED', 'CANCELLED');
CREATE INDEX ix_sessions_access_key_name ON sessions (access_key, name, created_at);
CREATE INDEX ix_sessions_access_key_created_at ON sessions (access_key, created_at);
CREATE INDEX ix_sessions_status_created_at ON sessions (status, created_at);
CREATE INDEX ix_sessions_created_at ON sessions (created_at);

CREATE TABLE kernels (
    id                TEXT PRIMARY KEY NOT NULL,
    session_id        TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    access_key        TEXT NOT NULL,
    cluster_role      TEXT NOT NULL,
    cluster_idx       INTEGER NOT NULL,
    cluster_hostname  TEXT NOT NULL,
    image             TEXT NOT NULL,
    agent_id          TEXT,
    agent_addr        TEXT,
    container_id      TEXT,
    status            TEXT NOT NULL,
    status_info       TEXT,
    status_history    TEXT NOT NULL,
    requested_slots   TEXT NOT NULL,
    occupied_slots    TEXT NOT NULL,
    exit_code         INTEGER,
    created_at        TEXT NOT NULL,
    terminated_at     TEXT
);
CREATE INDEX ix_kernels_session_id ON kernels (session_id);
CREATE INDEX ix_kernels_agent_id_status ON kernels (agent_id, status);
