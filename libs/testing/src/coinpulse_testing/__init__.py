"""Test and benchmark support, dev-only (never a dependency of a production package)."""
