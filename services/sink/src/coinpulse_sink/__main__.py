"""`python -m coinpulse_sink [run|migrate|partitions|apply|status]`."""

from __future__ import annotations

import argparse
import json
import sys

from coinpulse_common.logging import configure

from coinpulse_sink import db
from coinpulse_sink.metrics import SinkMetrics
from coinpulse_sink.naming import Names
from coinpulse_sink.settings import SinkSettings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="coinpulse_sink", description=__doc__)
    ap.add_argument("command", nargs="?", default="run",
                    choices=["run", "migrate", "partitions", "apply", "status"],
                    help="run: the service (default); migrate: Alembic upgrade head; partitions: create ahead; "
                         "apply: PUT every connector file once; status: connector states as JSON")
    args = ap.parse_args(argv)
    s = SinkSettings()
    configure()
    names = Names(s.sink_namespace)
    if args.command == "migrate":
        db.migrate(s, names)
        print(db.current_revision(s, names))
        return 0
    if args.command == "partitions":
        rep = db.maintain_partitions(s, names)
        print(json.dumps({"created": rep.created, "default_rows": rep.default_rows}))
        return 0
    if args.command in ("apply", "status"):
        from coinpulse_sink.service import wanted_connectors
        from coinpulse_sink.supervisor import ConnectSupervisor

        sup = ConnectSupervisor(s.connect, wanted_connectors(s, names), SinkMetrics())
        if args.command == "apply":
            res = sup.apply_all()
            print(json.dumps(res, indent=2))
            return 0 if "error" not in res.values() else 1
        sup.tick()
        print(json.dumps(sup.health(), indent=2))
        return 0 if sup.healthy else 1
    from coinpulse_sink.service import SinkService

    SinkService(s).run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
