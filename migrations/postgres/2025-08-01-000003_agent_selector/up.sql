-- The agent selector a scaling group's sessions are placed with (concentrated, dispersed, roundrobin); NULL: the
-- manager's default.
ALTER TABLE scaling_groups ADD COLUMN agent_selector TEXT;
