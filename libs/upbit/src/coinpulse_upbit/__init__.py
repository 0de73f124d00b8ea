"""The Upbit wire format, once (see the package description)."""
