ALTER TABLE sessions DROP COLUMN architecture;
ALTER TABLE sessions DROP COLUMN designated_agents;
ALTER TABLE sessions DROP COLUMN dependencies;
ALTER TABLE sessions DROP COLUMN starts_at;
