-- Roles for the fleet's central database (docs/fleet.md). Run as the database's owner after
-- every `ffrtmp db upgrade` on it (it is idempotent):
--   psql "service=fleet-admin" -f roles.sql
-- Then one login role per node, a member of ffrtmp_node:
--   CREATE ROLE edge_042 LOGIN PASSWORD '...' IN ROLE ffrtmp_node;
-- A node's role writes only the rows of the nodes it registered itself (fleet_nodes.owner is
-- the role that first shipped as that node), enforced by row-level security; readers see all;
-- operators may also record requeue/discard actions for any node.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ffrtmp_node') THEN
        CREATE ROLE ffrtmp_node NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ffrtmp_reader') THEN
        CREATE ROLE ffrtmp_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ffrtmp_operator') THEN
        CREATE ROLE ffrtmp_operator NOLOGIN IN ROLE ffrtmp_reader;
    END IF;
END $$;

GRANT USAGE ON SCHEMA public TO ffrtmp_node, ffrtmp_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO ffrtmp_reader;
GRANT SELECT ON alembic_version TO ffrtmp_node;
GRANT SELECT, INSERT, UPDATE ON fleet_nodes TO ffrtmp_node;
GRANT SELECT, UPDATE ON fleet_actions TO ffrtmp_node;
GRANT INSERT ON fleet_actions TO ffrtmp_operator;
GRANT USAGE ON SEQUENCE fleet_actions_id_seq TO ffrtmp_operator;

ALTER TABLE fleet_nodes ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS node_own ON fleet_nodes;
CREATE POLICY node_own ON fleet_nodes TO ffrtmp_node
    USING (owner = current_user) WITH CHECK (owner = current_user);
DROP POLICY IF EXISTS readers_all ON fleet_nodes;
CREATE POLICY readers_all ON fleet_nodes FOR SELECT TO ffrtmp_reader USING (true);

ALTER TABLE fleet_actions ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS node_own ON fleet_actions;
CREATE POLICY node_own ON fleet_actions TO ffrtmp_node
    USING (node_id IN (SELECT node_id FROM fleet_nodes WHERE owner = current_user));
DROP POLICY IF EXISTS readers_all ON fleet_actions;
CREATE POLICY readers_all ON fleet_actions FOR SELECT TO ffrtmp_reader USING (true);
DROP POLICY IF EXISTS operators_record ON fleet_actions;
CREATE POLICY operators_record ON fleet_actions FOR INSERT TO ffrtmp_operator WITH CHECK (true);

-- Every shipped table: the tables with a node_id column besides the two above, so a table added
-- by a later central revision is covered by running this file again.
DO $$
DECLARE
    t text;
    own text := 'node_id IN (SELECT node_id FROM fleet_nodes WHERE owner = current_user)';
BEGIN
    FOR t IN
        SELECT c.table_name FROM information_schema.columns c
         WHERE c.table_schema = 'public' AND c.column_name = 'node_id'
           AND c.table_name NOT IN ('fleet_nodes', 'fleet_actions')
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I TO ffrtmp_node', t);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS node_own_rows ON %I', t);
        EXECUTE format(
            'CREATE POLICY node_own_rows ON %I TO ffrtmp_node USING (%s) WITH CHECK (%s)',
            t, own, own);
        EXECUTE format('DROP POLICY IF EXISTS readers_all ON %I', t);
        EXECUTE format(
            'CREATE POLICY readers_all ON %I FOR SELECT TO ffrtmp_reader USING (true)', t);
    END LOOP;
END $$;
