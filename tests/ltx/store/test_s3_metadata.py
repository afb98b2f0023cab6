"""`litestream-timestamp` text: Go's RFC3339Nano of a UTC time, as Litestream 0.5.17 writes it."""

from __future__ import annotations

import pytest

from ltx.store.s3_metadata import format_timestamp, parse_timestamp


@pytest.mark.parametrize("ms,text", [
    (0, "1970-01-01T00:00:00Z"),
    (1_700_000_000_000, "2023-11-14T22:13:20Z"),
    (1_700_000_000_100, "2023-11-14T22:13:20.1Z"),
    (1_700_000_000_120, "2023-11-14T22:13:20.12Z"),
    (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
    (1_700_000_000_003, "2023-11-14T22:13:20.003Z"),
    (951_782_400_500, "2000-02-29T00:00:00.5Z"),
    (-1, "1969-12-31T23:59:59.999Z"),
])
def test_format_and_parse(ms: int, text: str) -> None:
    assert format_timestamp(ms) == text
    assert parse_timestamp(text) == ms


def test_parse_accepts_offsets_and_nanoseconds() -> None:
    assert parse_timestamp("2023-11-14T23:13:20.123456789+01:00") == 1_700_000_000_123
    assert parse_timestamp("2023-11-14T17:13:20-05:00") == 1_700_000_000_000


@pytest.mark.parametrize("bad", ["", "yesterday", "5 minutes ago", "2023-11-14T22:13:20",
                                 "2023-11-14T22:13:20.Z", "2023-13-14T22:13:20Z"])
def test_parse_rejects_other_text(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(bad)
