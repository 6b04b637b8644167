-- Scheduling predicates a session carries from its creation: a start time, the sessions it waits for, the agents an
-- admin designated, and the CPU architecture asked for. Dependencies are a JSONB array of session ids on the row (as
-- in the SQLite store) so a session is read and written as one row; the deployment migration's
-- `session_dependencies` table is not used by the store.
ALTER TABLE sessions ADD COLUMN starts_at TIMESTAMPTZ;
ALTER TABLE sessions ADD COLUMN dependencies JSONB NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE sessions ADD COLUMN designated_agents JSONB NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE sessions ADD COLUMN architecture TEXT;
