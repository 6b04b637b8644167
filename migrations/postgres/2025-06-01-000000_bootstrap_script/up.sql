-- The script a session's kernels run once before they take code (Backend.AI's bootstrap_script).
ALTER TABLE sessions ADD COLUMN bootstrap_script TEXT;
