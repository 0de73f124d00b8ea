"""Helpers for revision files: the namespace being migrated."""

from __future__ import annotations

from alembic import context

from coinpulse_sink.naming import Names


def names() -> Names:
    return context.config.attributes["names"]
