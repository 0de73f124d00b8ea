"""The Prefect flows. Each wraps the plain functions of its module in tasks (retries for what is transient) and
reports what it did as a table artifact; a data check that finds a problem fails its run with the reason."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from coinpulse_flows import backfill as backfill_mod
from coinpulse_flows import backup, checks, marts, tiering
from coinpulse_flows.partitions import Partition
from coinpulse_flows.settings import FlowSettings
from coinpulse_flows.storage import Store

# settings travel as task inputs: never cache on them (nor persist them)
RETRY = {"retries": 2, "retry_delay_seconds": [10, 60], "cache_policy": NO_CACHE}


class DataCheckFailed(RuntimeError):
    pass


def _settings() -> FlowSettings:
    """The flows' settings come from the environment of the process that runs them (the worker), never from a
    flow's parameters: whoever can reach the Prefect API can start a run, and must not choose the endpoints, paths
    or binaries it uses (a backup pointed at another S3 endpoint, a `pg_bin` of their own)."""
    return FlowSettings()


def _artifact(key: str, rows: list[dict], description: str) -> None:
    try:
        create_table_artifact(key=key, table=rows or [{"result": "nothing to do"}], description=description)
    except Exception as e:  # noqa: BLE001 - an artifact is a report, never a reason to fail the work
        get_run_logger().warning("artifact not created: %s", e)


@task(name="export_partition", **RETRY)
def export_partition(s: FlowSettings, p: Partition) -> dict:
    return asdict(tiering.tier_partition(s, p, Store(s)))


@task(name="archive_object", **RETRY)
def archive_object(s: FlowSettings, key: str) -> dict:
    return asdict(tiering.archive_object(s, Store(s), key))


@flow(name="tier-postgres-to-s3", log_prints=True)
def tier_postgres(today: date | None = None) -> list[dict]:
    """Export every day partition older than `tier_after_days` to Parquet on S3, verify, then drop it."""
    s = _settings()
    Store(s).ensure_bucket()
    due = tiering.due_partitions(s, today)
    get_run_logger().info("%d partitions due (older than %d days)", len(due), s.tier_after_days)
    out = [export_partition(s, p) for p in due]
    _artifact("tier-postgres-to-s3", out, "partitions moved from PostgreSQL to S3")
    return out


@flow(name="tier-s3-to-archive", log_prints=True)
def tier_archive(today: date | None = None) -> list[dict]:
    """Copy S3 objects older than `archive_after_days` to the local archive, verify, then delete them from S3."""
    s = _settings()
    keys = tiering.archive_due(s, Store(s), today)
    get_run_logger().info("%d objects due (older than %d days)", len(keys), s.archive_after_days)
    out = [archive_object(s, k) for k in keys]
    _artifact("tier-s3-to-archive", out, "objects moved from S3 to the local archive")
    return out


@task(name="dump_database", **RETRY)
def dump_database(s: FlowSettings) -> dict:
    return asdict(backup.backup_database(s, Store(s)))


@task(name="restore_dump", retries=1, retry_delay_seconds=30, cache_policy=NO_CACHE)
def restore_dump(s: FlowSettings, key: str | None) -> dict:
    return asdict(backup.restore_check(s, Store(s), key))


@flow(name="backup-postgres", log_prints=True)
def backup_postgres() -> dict:
    """pg_dump to S3, then drop dumps beyond the retention."""
    s = _settings()
    Store(s).ensure_bucket()
    r = dump_database(s)
    _artifact("backup-postgres", [{k: v for k, v in r.items() if k != "deleted"} | {"deleted": len(r["deleted"])}],
              "database dump")
    return r


@flow(name="restore-check", log_prints=True)
def restore_check(key: str | None = None) -> dict:
    """Restore the newest dump (or `key`) into a scratch database and compare it with the dump's contents."""
    s = _settings()
    r = restore_dump(s, key)
    _artifact("restore-check", [r], "restore check")
    return r


@task(name="refresh_marts", **RETRY)
def refresh_marts_task(s: FlowSettings, as_of: datetime | None) -> dict:
    return asdict(marts.refresh_marts(s, as_of))


@flow(name="gold-marts", log_prints=True)
def gold_marts(as_of: datetime | None = None) -> dict:
    """Recompute the KPI marts and publish new mention spikes."""
    return refresh_marts_task(_settings(), as_of)


@flow(name="backfill", log_prints=True)
def backfill(start: datetime, end: datetime, source: str = "kafka") -> dict:
    """Rebuild silver trades and gold candles for [start, end) from bronze (Kafka or the S3 bronze archive)."""
    r = asdict(backfill_mod.rebuild(_settings(), start, end, source))
    _artifact("backfill", [r], "backfill")
    return r


@task(name="check_candle_gaps", retries=1, retry_delay_seconds=10, cache_policy=NO_CACHE)
def check_candle_gaps(s: FlowSettings) -> list[str]:
    return checks.candle_gaps(s)


@task(name="check_crawl_freshness", retries=1, retry_delay_seconds=10, cache_policy=NO_CACHE)
def check_crawl_freshness(s: FlowSettings) -> list[str]:
    return checks.crawl_freshness(s)


@task(name="check_consumer_lag", retries=1, retry_delay_seconds=10, cache_policy=NO_CACHE)
def check_consumer_lag(s: FlowSettings) -> list[str]:
    lags, problems = checks.consumer_lag(s)
    _artifact("consumer-lag", [{"group": g, "lag": n} for g, n in sorted(lags.items())], "consumer lag per group")
    return problems


@task(name="check_tier_sizes", retries=1, retry_delay_seconds=10, cache_policy=NO_CACHE)
def check_tier_sizes(s: FlowSettings) -> list[str]:
    sizes, problems = checks.tier_sizes(s, Store(s))
    rows = [{"tier": t, "table": k, "mib": round(v / 2**20, 2)} for t, d in sizes.items() for k, v in sorted(d.items())]
    _artifact("tier-sizes", rows, "bytes per tier and table")
    return problems


CHECKS = {"candle_gaps": check_candle_gaps, "crawl_freshness": check_crawl_freshness,
          "consumer_lag": check_consumer_lag, "tier_sizes": check_tier_sizes}


@flow(name="data-checks", log_prints=True)
def data_checks(only: list[str] | None = None) -> dict:
    """Run the data checks; the run fails with every problem found (or every check that could not run)."""
    s = _settings()
    problems: list[str] = []
    ran = []
    for name, check in CHECKS.items():
        if only and name not in only:
            continue
        ran.append(name)
        state = check(s, return_state=True)
        if state.is_completed():
            problems.extend(state.result())
        else:
            problems.append(f"{name}: check could not run: {state.message}")
    if problems:
        raise DataCheckFailed(" | ".join(problems))
    return {"checks": ran, "checked_at": datetime.now(UTC).isoformat()}


ALL_FLOWS = {"tier-postgres": tier_postgres, "tier-archive": tier_archive, "backup": backup_postgres,
             "restore-check": restore_check, "gold-marts": gold_marts, "data-checks": data_checks,
             "backfill": backfill}
