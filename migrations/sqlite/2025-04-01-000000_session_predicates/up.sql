-- Scheduling predicates a session carries from its creation: a start time, the sessions it waits for, the agents an
-- admin designated, and the CPU architecture asked for. Lists are JSON arrays of ids, as in the PostgreSQL store.
ALTER TABLE sessions ADD COLUMN starts_at TEXT;
ALTER TABLE sessions ADD COLUMN dependencies TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sessions ADD COLUMN designated_agents TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sessions ADD COLUMN architecture TEXT;
