-- The shared memory (/dev/shm) size in bytes every kernel gets (config.resource_opts.shmem); NULL: the runtime's default.
ALTER TABLE sessions ADD COLUMN shmem BIGINT;
