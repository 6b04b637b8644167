ALTER TABLE sessions DROP COLUMN shmem;
