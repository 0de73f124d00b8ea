"""Deployments and their schedules, served by `python -m coinpulse_flows serve` (visible and runnable in the UI),
with the metrics their runs set on `flows_metrics_port` (see `metrics`)."""

from __future__ import annotations

from prefect import serve

from coinpulse_flows import flows, metrics
from coinpulse_flows.settings import FlowSettings

# (flow, deployment name, cron in UTC or None for on-demand only, description)
SCHEDULES = (
    (flows.tier_postgres, "daily", "30 0 * * *", "PostgreSQL partitions older than 14 days → S3 Parquet"),
    (flows.tier_archive, "monthly", "0 2 1 * *", "S3 objects older than 60 days → local archive"),
    (flows.backup_postgres, "daily", "0 1 * * *", "pg_dump to S3 with retention"),
    (flows.restore_check, "weekly", "0 3 * * 0", "restore the newest dump into a scratch database"),
    (flows.gold_marts, "every-5-minutes", "*/5 * * * *", "KPI marts and mention spikes"),
    (flows.data_checks, "every-15-minutes", "*/15 * * * *", "candle gaps, crawl freshness, lag, tier sizes"),
    (flows.backfill, "on-demand", None, "rebuild silver and gold for a range from bronze"),
)


def deployments() -> list:
    out = []
    for fl, name, cron, description in SCHEDULES:
        kwargs = {"name": name, "description": description, "tags": ["coinpulse"]}
        if cron:
            kwargs["cron"] = cron
        out.append(fl.to_deployment(**kwargs))
    return out


def serve_all(limit: int | None = None, only: list | None = None) -> None:
    """Serve every deployment (or `only` these), with the flows' metrics on `flows_metrics_port` (flows.metrics)."""
    metrics.start(FlowSettings())
    serve(*(deployments() if only is None else only), limit=limit)
