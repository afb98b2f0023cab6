"""The keys of the benchmark databases' rows, as functions of the row number (bench/harness/
databases.py builds the rows; scenarios compute their queries from these without reading the
database). Its own module so that a benchmark child imports nothing else of the harness's
builders (dataclasses, tempfile): what a child loads before its peer opens counts for both peers."""

from __future__ import annotations


def t_key(i: int) -> str:
    """The indexed text key of row `i` of `t` (unique, not in row order)."""
    return f"k{(i * 2654435761) % (1 << 32):010d}-{i}"


def w_key(i: int) -> str:
    """The primary key of row `i` of `w`."""
    return f"w{(i * 40503) % 65521:05d}-{i:08d}"
