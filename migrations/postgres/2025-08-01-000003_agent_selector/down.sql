ALTER TABLE scaling_groups DROP COLUMN agent_selector;
