"""SQL for roles, grants and the partition functions, rendered for a namespace (used by the migrations)."""

from __future__ import annotations

from coinpulse_sink.naming import Names

OWNER_ROLE = "coinpulse_sink_owner"  # NOLOGIN; owns silver/gold tables and their partitions
WRITER_ROLE = "coinpulse_writer"  # connectors: member of OWNER_ROLE (write + schema evolution of those tables only)
READER_ROLE = "coinpulse_reader"  # dashboard and queries: SELECT on silver and gold


def roles_sql() -> list[str]:
    return [
        f"""DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{OWNER_ROLE}') THEN CREATE ROLE {OWNER_ROLE} NOLOGIN; END IF;
END $$""",
        f"GRANT {OWNER_ROLE} TO current_user",
        f"GRANT {OWNER_ROLE} TO {WRITER_ROLE}",
    ]


def schemas_sql(n: Names) -> list[str]:
    out = []
    for s in (n.bronze, n.silver, n.gold, n.ops):
        out.append(f'CREATE SCHEMA IF NOT EXISTS "{s}"')
    for s in (n.silver, n.gold, n.ops):
        out.append(f'GRANT USAGE, CREATE ON SCHEMA "{s}" TO {OWNER_ROLE}')
    for s in (n.silver, n.gold):
        out.append(f'GRANT USAGE ON SCHEMA "{s}" TO {READER_ROLE}')
        out.append(f'ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} IN SCHEMA "{s}" GRANT SELECT ON TABLES TO {READER_ROLE}')
    return out


def partition_functions_sql(n: Names) -> list[str]:
    """`<ops>.ensure_day_partition(...)`, `<ops>.create_partitions_ahead(days, back_days)`, `<ops>.default_rows()`.

    A day that already has rows in the DEFAULT partition gets its partition by moving those rows into a new table
    and attaching it (so a late or early row is never lost and never blocks partition creation).
    """
    ops, schemas = n.ops, f"ARRAY['{n.silver}', '{n.gold}']"
    return [
        f"""CREATE OR REPLACE FUNCTION "{ops}".ensure_day_partition(sch text, tbl text, col text, d date)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
  part text := tbl || '_p' || to_char(d, 'YYYYMMDD');
  def text := tbl || '_default';
  lo timestamptz := d::timestamp AT TIME ZONE 'UTC';
  hi timestamptz := (d + 1)::timestamp AT TIME ZONE 'UTC';
  n bigint;
BEGIN
  IF to_regclass(format('%I.%I', sch, part)) IS NOT NULL THEN RETURN -1; END IF;
  EXECUTE format('LOCK TABLE %I.%I IN SHARE ROW EXCLUSIVE MODE', sch, tbl);
  IF to_regclass(format('%I.%I', sch, def)) IS NULL THEN
    n := 0;
  ELSE
    EXECUTE format('LOCK TABLE %I.%I IN ACCESS EXCLUSIVE MODE', sch, def);
    EXECUTE format('SELECT count(*) FROM %I.%I WHERE %I >= $1 AND %I < $2', sch, def, col, col) INTO n USING lo, hi;
  END IF;
  IF n = 0 THEN
    EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)', sch, part, sch, tbl, lo, hi);
  ELSE
    EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS)', sch, part, sch, tbl);
    EXECUTE format('WITH moved AS (DELETE FROM %I.%I WHERE %I >= $1 AND %I < $2 RETURNING *) '
                   'INSERT INTO %I.%I SELECT * FROM moved', sch, def, col, col, sch, part) USING lo, hi;
    EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                   sch, tbl, sch, part, lo, hi);
  END IF;
  RETURN n;
END $f$""",
        f"""CREATE OR REPLACE FUNCTION "{ops}".partitioned_tables()
RETURNS TABLE(sch text, tbl text, col text) LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $f$
  SELECT ns.nspname::text, c.relname::text, a.attname::text
  FROM pg_partitioned_table p
  JOIN pg_class c ON c.oid = p.partrelid
  JOIN pg_namespace ns ON ns.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0]
  WHERE p.partstrat = 'r' AND p.partnatts = 1 AND ns.nspname = ANY ({schemas})
  ORDER BY 1, 2
$f$""",
        f"""CREATE OR REPLACE FUNCTION "{ops}".create_partitions_ahead(days integer, back_days integer DEFAULT 1)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
  t record; d date; made integer := 0; today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
  FOR t IN SELECT * FROM "{ops}".partitioned_tables() LOOP
    -- days that already have rows waiting in the DEFAULT partition
    FOR d IN EXECUTE format('SELECT DISTINCT (%I AT TIME ZONE ''UTC'')::date FROM %I.%I ORDER BY 1',
                            t.col, t.sch, t.tbl || '_default') LOOP
      IF "{ops}".ensure_day_partition(t.sch, t.tbl, t.col, d) >= 0 THEN made := made + 1; END IF;
    END LOOP;
    FOR d IN SELECT generate_series(today - back_days, today + days, interval '1 day')::date LOOP
      IF "{ops}".ensure_day_partition(t.sch, t.tbl, t.col, d) >= 0 THEN made := made + 1; END IF;
    END LOOP;
  END LOOP;
  RETURN made;
END $f$""",
        f"""CREATE OR REPLACE FUNCTION "{ops}".default_rows()
RETURNS TABLE(tbl text, n bigint) LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $f$
DECLARE t record;
BEGIN
  FOR t IN SELECT * FROM "{ops}".partitioned_tables() LOOP
    tbl := t.sch || '.' || t.tbl;
    EXECUTE format('SELECT count(*) FROM %I.%I', t.sch, t.tbl || '_default') INTO n;
    RETURN NEXT;
  END LOOP;
END $f$""",
        *(f'REVOKE ALL ON FUNCTION "{ops}".{f} FROM PUBLIC' for f in (
            "ensure_day_partition(text, text, text, date)", "create_partitions_ahead(integer, integer)",
            "default_rows()")),
    ]


def reader_grants_sql(n: Names) -> list[str]:
    return [f'GRANT SELECT ON ALL TABLES IN SCHEMA "{s}" TO {READER_ROLE}' for s in (n.silver, n.gold)]
