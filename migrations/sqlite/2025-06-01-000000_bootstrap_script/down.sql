ALTER TABLE sessions DROP COLUMN bootstrap_script;
