"""`python -m coinpulse_flows serve | query "SQL" | backfill (--from … --to … | --loaded-from … --loaded-to …)
[--what trades|mentions] [--source …] [--late-s N] [--dry-run] | run <flow>`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, datetime


def _when(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _query(args) -> int:
    from coinpulse_flows.query import run_query
    from coinpulse_flows.settings import FlowSettings

    cols, rows = run_query(FlowSettings(), args.sql)
    if args.format == "json":
        for r in rows:
            print(json.dumps(dict(zip(cols, r, strict=True)), default=str, ensure_ascii=False))
    elif args.format == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(*cols)
        for r in rows:
            t.add_row(*("NULL" if v is None else str(v) for v in r))
        Console().print(t)
        print(f"{len(rows)} rows", file=sys.stderr)
    return 0


def _backfill(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from coinpulse_flows.backfill import IncompleteSource, loaded_range, rebuild
    from coinpulse_flows.settings import FlowSettings

    s = FlowSettings()
    if args.what == "mentions":
        return _backfill_mentions(s, args)
    if args.source not in ("kafka", "s3"):
        print(f"backfill --what trades: --source kafka or s3 (upbit.raw), not {args.source}", file=sys.stderr)
        return 2
    by_event = args.start is not None or args.end is not None
    by_load = args.loaded_from is not None or args.loaded_to is not None
    if by_event == by_load or (by_event and None in (args.start, args.end)) or \
            (by_load and None in (args.loaded_from, args.loaded_to)):
        print("backfill: give either --from and --to (event time) or --loaded-from and --loaded-to (received_at)",
              file=sys.stderr)
        return 2
    try:
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), transient=False, console=_stderr_console()) as bar:
            tid = bar.add_task(f"bronze from {args.source}", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(tid, completed=done, total=total)

            if by_load:
                rng = loaded_range(s, _when(args.loaded_from), _when(args.loaded_to), args.source, progress)
                if rng is None:
                    print("backfill: no trade was received in that window; nothing to do", file=sys.stderr)
                    return 0
                start, end = rng
                print(f"backfill: trades received in that window have event times in [{start.isoformat()}, "
                      f"{end.isoformat()})", file=sys.stderr)
            else:
                start, end = _when(args.start), _when(args.end)
            late = {} if args.late_s is None else {"late_s": args.late_s}
            r = rebuild(s, start, end, args.source, progress=progress, dry_run=args.dry_run, **late)
    except IncompleteSource as e:
        print(str(e), file=sys.stderr)
        return 3
    return _report(r, args.dry_run)


def _report(r, dry_run: bool) -> int:
    """A rebuild's result: what a dry run would replace (stderr), the result as JSON (stdout)."""
    if dry_run:
        print(f"dry run, nothing changed: [{r.start}, {r.end}) from {r.source}", file=sys.stderr)
        for table, n in r.replace.items():
            print(f"  {table}: {n['now']} rows now, {n['rebuilt']} after the rebuild", file=sys.stderr)
    print(json.dumps(r.__dict__, default=str))
    return 0


def _backfill_mentions(s, args) -> int:
    from coinpulse_flows import mention_backfill as mb
    from coinpulse_flows.backfill import IncompleteSource

    if args.start is None or args.end is None or args.loaded_from is not None or args.loaded_to is not None:
        print("backfill --what mentions: give --from and --to (the minutes, by document time)", file=sys.stderr)
        return 2
    try:
        r = mb.rebuild(s, _when(args.start), _when(args.end), args.source, dry_run=args.dry_run,
                       late_s=mb.LATE_S if args.late_s is None else args.late_s)
    except mb.UnsupportedSource as e:
        print(f"backfill: {e}", file=sys.stderr)
        return 2
    except IncompleteSource as e:
        print(str(e), file=sys.stderr)
        return 3
    return _report(r, args.dry_run)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _run(args) -> int:
    from coinpulse_flows.flows import ALL_FLOWS

    params = json.loads(args.params) if args.params else {}
    state = ALL_FLOWS[args.flow](**params, return_state=True)
    print(f"{args.flow}: {state.type.value} {state.message or ''}".strip())
    return 0 if state.is_completed() else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="coinpulse_flows", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve", help="serve every deployment with its schedule (Prefect UI shows them)")
    sv.add_argument("--limit", type=int, default=None, help="most flow runs at once")
    q = sub.add_parser("query", help="SQL over PostgreSQL, S3 and the local archive, one view per entity")
    q.add_argument("sql")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    b = sub.add_parser("backfill", help="rebuild silver and gold for [from, to) from bronze")
    b.add_argument("--from", dest="start", help="ISO time, UTC if no offset, whole minute")
    b.add_argument("--to", dest="end", help="ISO time, exclusive, whole minute")
    b.add_argument("--loaded-from", help="instead of --from/--to: repair the minutes of the trades received (received_at)"
                   " from this ISO time, whole minute")
    b.add_argument("--loaded-to", help="end of the received_at window, exclusive, whole minute")
    b.add_argument("--what", choices=("trades", "mentions"), default="trades",
                   help="trades: silver trades and gold candles from upbit.raw; mentions: gold.mentions_1m from "
                   "dc.post/dc.comment, or from the fetched pages (dc.raw)")
    b.add_argument("--source", choices=("kafka", "raw", "s3"), default="kafka",
                   help="trades: upbit.raw in kafka or its bronze objects in s3; mentions: kafka = dc.post and "
                   "dc.comment, raw = dc.raw in Kafka, s3 = dc.raw's bronze objects")
    b.add_argument("--late-s", type=int, default=None, help="seconds after --to still read for late arrivals: "
                   "trades, frames received that late (default 120); mentions, later versions and comments (default "
                   "10800, the agent's mention lateness)")
    b.add_argument("--dry-run", action="store_true", help="print the rows per table now and after the rebuild; "
                   "change nothing")
    r = sub.add_parser("run", help="run one flow now (through the Prefect server)")
    from coinpulse_flows.flows import ALL_FLOWS

    r.add_argument("flow", choices=sorted(ALL_FLOWS))
    r.add_argument("--params", help="JSON object of flow parameters")
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        from coinpulse_flows.deployments import serve_all

        serve_all(args.limit)
        return 0
    return {"query": _query, "backfill": _backfill, "run": _run}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
