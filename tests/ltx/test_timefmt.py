"""One grammar for times and durations (ltx/timefmt.py), whoever reads them: ltxctl's options,
the VFS's timestamp=/poll=/wait=/sync= and PRAGMA litestream_time, blockmap's --at, and S3's
litestream-timestamp metadata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ltx.timefmt import TimeFormatError, format_time, parse_duration, parse_rfc3339, parse_time, to_millis

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("5m", timedelta(minutes=5)), ("24h", timedelta(hours=24)), ("1h30m", timedelta(minutes=90)),
    ("1.5s", timedelta(seconds=1.5)), ("0", timedelta(0)), ("250ms", timedelta(milliseconds=250)),
    ("1h0m0.5s", timedelta(hours=1, seconds=0.5)), (".5h", timedelta(minutes=30)),
    ("300us", timedelta(microseconds=300)),
    ("1", timedelta(seconds=1)), ("0.5", timedelta(seconds=0.5)), (" 10ms ", timedelta(milliseconds=10)),
])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5 minutes", "1d", "m", "1h30", "10 ms", "abc", "1e3s", "+"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(TimeFormatError, match="invalid duration"):
        parse_duration(text)


def test_a_sign_only_where_asked_for() -> None:
    with pytest.raises(TimeFormatError, match="negative"):
        parse_duration("-5m")
    assert parse_duration("-5m", negative=True) == timedelta(minutes=-5)
    assert parse_duration("+5m") == timedelta(minutes=5)


@pytest.mark.parametrize("text, expected", [
    ("2024-05-01T12:00:00Z", NOW),
    ("2024-05-01t12:00:00z", NOW),
    ("2024-05-01 12:00:00Z", NOW),
    ("2024-05-01T14:00:00+02:00", NOW),
    ("2024-05-01T12:00:00.123456789Z", NOW + timedelta(microseconds=123456)),
    ("2024-05-01T12:00:00.5-00:30", NOW + timedelta(minutes=30, milliseconds=500)),
])
def test_rfc3339(text: str, expected: datetime) -> None:
    assert parse_rfc3339(text) == expected == parse_time(text)
    assert parse_time(text).tzinfo is UTC


@pytest.mark.parametrize("text, ago", [
    ("5 minutes ago", timedelta(minutes=5)), ("1 hour ago", timedelta(hours=1)), ("30s ago", timedelta(seconds=30)),
    ("2 DAYS ago", timedelta(days=2)), ("1 week ago", timedelta(weeks=1)), ("0 seconds ago", timedelta(0)),
    ("1h30m ago", timedelta(minutes=90)), ("1.5 hours ago", timedelta(minutes=90)),
    ("250ms ago", timedelta(milliseconds=250)), ("1d ago", timedelta(days=1)),
])
def test_relative_times(text: str, ago: timedelta) -> None:
    assert parse_time(text, now=NOW) == NOW - ago


@pytest.mark.parametrize("text, reason", [
    ("yesterday", "RFC 3339"), ("2024-05-01T12:00:00", "time zone"), ("2024-13-01T12:00:00Z", "not a valid"),
    ("5 minutes", "RFC 3339"), ("soon ago", "RFC 3339"), ("2024-05-01T12:00:00.Z", "RFC 3339"),
])
def test_bad_times(text: str, reason: str) -> None:
    with pytest.raises(TimeFormatError, match="invalid time") as info:
        parse_time(text)
    assert reason in str(info.value)


def test_format_is_go_rfc3339nano_in_utc() -> None:
    assert format_time(NOW) == "2024-05-01T12:00:00Z"
    assert format_time(NOW + timedelta(microseconds=120000)) == "2024-05-01T12:00:00.12Z"
    assert format_time(datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))) == "2024-05-01T12:00:00Z"
    for when in (NOW, NOW + timedelta(microseconds=1), NOW - timedelta(days=20000, microseconds=999)):
        assert parse_time(format_time(when)) == when
    assert to_millis(NOW + timedelta(microseconds=1999)) == to_millis(NOW) + 1
