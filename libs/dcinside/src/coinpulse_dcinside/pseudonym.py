"""Pseudonymisation: a keyed hash (HMAC-SHA256) of uid, nickname or IP prefix. Nothing personal is stored in clear."""

from __future__ import annotations

import hashlib
import hmac
import re

_IP_PREFIX = re.compile(r"^\s*\(?\s*(\d{1,3})\.(\d{1,3})")


def ip_prefix(ip: str | None) -> str | None:
    """`118.235`, `(118.235)` and `220.127.*.*` → the two visible octets, or None."""
    if not ip:
        return None
    m = _IP_PREFIX.match(ip)
    return f"{m.group(1)}.{m.group(2)}" if m else None


class Pseudonymizer:
    def __init__(self, key: str):
        if not key:
            raise ValueError("empty pseudonymisation key")
        self._key = key.encode()

    def _h(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def author(self, *, uid: str | None, nick: str | None, ip: str | None) -> str:
        """Members by uid; anonymous writers by nickname and IP prefix (what the site shows to tell them apart)."""
        if uid:
            return self._h("uid", uid)
        return self._h("anon", f"{nick or ''}|{ip_prefix(ip) or ''}")

    def ip(self, ip: str | None) -> str | None:
        p = ip_prefix(ip)
        return self._h("ip", p) if p else None
