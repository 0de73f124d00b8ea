"""The mention rules, once (see the package description)."""
