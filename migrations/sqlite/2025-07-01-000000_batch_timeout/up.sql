-- How long a batch session's startup command may run, in seconds (Backend.AI's batch_timeout); NULL: no limit.
ALTER TABLE sessions ADD COLUMN batch_timeout BIGINT;
