"""LTX file names (`%016x-%016x.ltx`) and TXID formatting."""

from __future__ import annotations

import re

_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$")
MAX_TXID = (1 << 64) - 1


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
