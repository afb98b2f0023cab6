"""LTX file names (`%016x-%016x.ltx`), the replica's key layout, and TXID formatting. Light to
import: a cold open sends its first requests with this and the store alone (vfs/firstlook.py)."""

from __future__ import annotations

import re

_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$")
MAX_TXID = (1 << 64) - 1
#: The key of a replica's hint file (ltx/hint.py), beside the level directories.
HINT_KEY = "ltxvfs-hint.ltx"


def level_prefix(scheme: str, level: int) -> str:
    """The key prefix of a level for a backend scheme ('file' or 's3')."""
    return f"ltx/{level}/" if scheme == "file" else f"{level:04x}/"


def above_level_0(scheme: str) -> str:
    """A key after every level-0 key and before every other level's (a listing's start-after)."""
    return level_prefix(scheme, 0) + "~"


def format_txid(txid: int) -> str:
    return f"{txid:016x}"


def parse_txid(text: str) -> int:
    """Parse a TXID given in hex (with or without leading zeros or 0x)."""
    value = int(text, 16)
    if not 0 <= value <= MAX_TXID:
        raise ValueError(f"TXID out of range: {text}")
    return value


def format_filename(min_txid: int, max_txid: int) -> str:
    return f"{min_txid:016x}-{max_txid:016x}.ltx"


def parse_filename(name: str) -> tuple[int, int] | None:
    """(min TXID, max TXID) of an LTX file name, or None when `name` is not one."""
    m = _NAME.match(name)
    if m is None:
        return None
    return int(m.group(1), 16), int(m.group(2), 16)
