"""`make demo`: the whole pipeline on the bundled simulators (grows as the services land)."""

from __future__ import annotations

from coinpulse_common.settings import get_settings


def main() -> None:
    s = get_settings()
    print("coinpulse demo — the platform is up:")
    print(f"  Prefect UI        http://{s.host}:{s.prefect_port}/")
    print(f"  schema registry   {s.registry}")
    print(f"  Kafka             {s.bootstrap}   (try: uv run coinpulse topics list)")
    print("The services, simulators and dashboard are coming; `make down` stops the stack.")


if __name__ == "__main__":
    main()
