"""`coinpulse`: the front door to the native stack and coinpulse's services."""

from __future__ import annotations

import json
import sys
import time

import click
from coinpulse_common.paths import state_dir
from coinpulse_common.settings import get_settings

from coinpulse_platform import services


def _stack():
    from coinpulse_platform.stack import Stack
    return Stack(get_settings())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """coinpulse: Upbit market data and DCInside community, linked in real time."""


@main.command()
@click.option("--only", multiple=True, help="start only these parts (and their dependencies)")
@click.option("--timeout", type=float, default=None, help="seconds to wait for health (COINPULSE_START_TIMEOUT_S)")
def up(only: tuple[str, ...], timeout: float | None) -> None:
    """Fetch (first time), start and bootstrap every part of the stack; waits until all are healthy."""
    from coinpulse_platform import bootstrap
    t0 = time.monotonic()
    st = _stack()
    try:
        st.up(timeout=timeout, only=list(only) or None)
        if not only or {"kafka", "registry"} <= set(only):
            res = bootstrap.all_(st.s)
            changed = [c["subject"] for c in res["schemas"] if c["state"] == "registered"]
            click.echo(f"topics created: {len(res['topics_created'])}, schemas registered/changed: {len(changed)}",
                       err=True)
    except RuntimeError as e:
        raise click.ClickException(f"{e}\nRun `coinpulse status` and `coinpulse logs PART` to see why.") from e
    click.echo(f"stack healthy in {time.monotonic() - t0:.1f}s", err=True)


@main.command()
@click.option("--postgres-only", is_flag=True, help="only database roles and databases")
def init(postgres_only: bool) -> None:
    """Bootstrap an already running stack (compose's one-shot init): roles, topics, schemas, bucket, connectors."""
    from coinpulse_platform import bootstrap
    s = get_settings()
    bootstrap.postgres(s, None)
    if postgres_only:
        return
    bootstrap.registry_config(s)
    res = bootstrap.all_(s)
    bootstrap.s3_bucket(s)
    click.echo(f"topics created: {len(res['topics_created'])}; schemas: {len(res['schemas'])}", err=True)
    bootstrap.connectors(s)


@main.command()
@click.option("--purge", is_flag=True, help="also delete all data (Kafka logs, database, S3 objects, registry)")
def down(purge: bool) -> None:
    """Stop every process the stack started (data kept unless --purge)."""
    stopped = _stack().down(purge=purge)
    click.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}" + (" (data purged)" if purge else ""),
               err=True)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(as_json: bool) -> None:
    """Each part: healthy or not, port, version, pid, memory. Exit 1 if any part is unhealthy."""
    st = _stack().status()
    if as_json:
        click.echo(json.dumps(st, indent=2, default=str))
    else:
        for name, p in st.items():
            mark = "healthy" if p["healthy"] else ("running, not healthy" if p["running"] else "down")
            mem = f"{p['rss_mb']:.0f} MB" if p["rss_mb"] else ""
            click.echo(f"{name:9s} {mark:22s} {p['host']}:{p['port']:<6d} {str(p['version']):12s} "
                       f"pid {p['pid'] or '-':<8} {mem}")
    sys.exit(0 if all(p["healthy"] for p in st.values()) else 1)


@main.command()
@click.argument("part")
@click.option("-n", "--lines", default=100, help="lines to show")
@click.option("-f", "--follow", is_flag=True)
def logs(part: str, lines: int, follow: bool) -> None:
    """Show the log of a part (kafka, registry, connect, postgres, s3, prefect) or a service."""
    path = state_dir() / "logs" / f"{part}.log"
    if not path.is_file():
        known = sorted(p.stem for p in (state_dir() / "logs").glob("*.log"))
        raise click.ClickException(f"no log for {part!r}; known: {', '.join(known) or 'none (run `coinpulse up`)'}")
    import subprocess
    subprocess.call(["tail", f"-n{lines}", *(["-F"] if follow else []), str(path)])


def _run_named(name: str, table: dict[str, str], args: list[str]) -> None:
    """Replace this process with the module `name` stands for in `table` (an unknown name is a usage error)."""
    try:
        module = services.module_for(name, table)
    except KeyError as e:
        raise click.ClickException(str(e)) from e
    services.run_foreground(module, args)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("service")
@click.pass_context
def run(ctx: click.Context, service: str) -> None:
    """Run one coinpulse service in the foreground (ingest-upbit, crawl-dc, candle-agent, sink, dashboard)."""
    _run_named(service, services.SERVICES, ctx.args)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name")
@click.pass_context
def sim(ctx: click.Context, name: str) -> None:
    """Run a simulator in the foreground: `coinpulse sim upbit [...]`, `coinpulse sim dcinside [...]`."""
    _run_named(name, services.SIMULATORS, ctx.args)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("sql")
@click.pass_context
def query(ctx: click.Context, sql: str) -> None:
    """One SQL query across PostgreSQL, the S3 Parquet tier and the local archive (DuckDB)."""
    services.run_foreground("coinpulse_flows", ["query", sql, *ctx.args])


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def backfill(ctx: click.Context) -> None:
    """Rebuild silver and gold for a time range from bronze: `coinpulse backfill --from … --to … [--source …]`."""
    services.run_foreground("coinpulse_flows", ["backfill", *ctx.args])


@main.group()
def schemas() -> None:
    """Avro contracts in schemas/ versus the registry."""


@schemas.command("check")
def schemas_check() -> None:
    """Tell whether the working tree's schemas are compatible with what is registered (exit 1 if not)."""
    from coinpulse_platform import bootstrap
    results = bootstrap.check_schemas(get_settings())
    bad = False
    for c in results:
        bad |= c.state == "incompatible"
        click.echo(f"{c.state:12s} {c.subject:28s} {c.file:22s} {c.detail}")
    sys.exit(1 if bad else 0)


@schemas.command("register")
def schemas_register() -> None:
    """Register every schema (what `coinpulse up` does)."""
    from coinpulse_platform import bootstrap
    for c in bootstrap.register_schemas(get_settings()):
        click.echo(f"{c.state:12s} {c.subject}")


from coinpulse_platform.topics_cli import topics  # noqa: E402

main.add_command(topics)

if __name__ == "__main__":
    main()
