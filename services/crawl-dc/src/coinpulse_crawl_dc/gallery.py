"""Gallery configuration and the URLs of each kind (normal, minor, mini)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

PREFIX = {"normal": "/board", "minor": "/mgallery/board", "mini": "/mini/board"}
GALLTYPE = {"normal": "G", "minor": "M", "mini": "MI"}


@dataclass(frozen=True)
class Gallery:
    id: str
    kind: str = "normal"

    def __post_init__(self) -> None:
        if self.kind not in PREFIX:
            raise ValueError(f"gallery {self.id}: kind must be one of {sorted(PREFIX)}, not {self.kind!r}")
        if not self.id or not self.id.replace("_", "").isalnum():
            raise ValueError(f"bad gallery id {self.id!r}")

    def list_url(self, base: str, page: int, list_num: int) -> str:
        q = urlencode({"id": self.id, "page": page, "list_num": list_num})
        return f"{base.rstrip('/')}{PREFIX[self.kind]}/lists/?{q}"

    def view_url(self, base: str, no: int) -> str:
        return f"{base.rstrip('/')}{PREFIX[self.kind]}/view/?{urlencode({'id': self.id, 'no': no})}"

    def comment_url(self, base: str) -> str:
        return f"{base.rstrip('/')}/board/comment/"

    def comment_form(self, no: int, token: str, page: int) -> dict[str, str]:
        return {
            "id": self.id,
            "no": str(no),
            "cmt_id": self.id,
            "cmt_no": str(no),
            "e_s_n_o": token,
            "comment_page": str(page),
            "sort": "",
            "_GALLTYPE_": GALLTYPE[self.kind],
        }


def parse_galleries(spec: str) -> list[Gallery]:
    """`"bitcoins_new1:normal, coin:minor"` → galleries (kind defaults to normal)."""
    out: list[Gallery] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        gid, _, kind = part.partition(":")
        out.append(Gallery(gid.strip(), (kind or "normal").strip()))
    if not out:
        raise ValueError("no galleries configured (COINPULSE_DC_GALLERIES)")
    return out
