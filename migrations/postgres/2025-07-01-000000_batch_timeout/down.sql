ALTER TABLE sessions DROP COLUMN batch_timeout;
