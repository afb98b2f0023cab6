"""Times and durations, in the forms Litestream reads and prints, for every part of ltxvfs
(ltxctl's options, the VFS's URI parameters and PRAGMAs, blockmap's --at, S3 metadata).

- A time: RFC 3339 (`2006-01-02T15:04:05Z`, an offset instead of `Z`, a fraction of up to nine
  digits kept to microseconds; `T` may be `t` or a space) or a relative time as the Litestream
  VFS takes it, `5 minutes ago` (second, minute, hour, day, week, singular, plural or short) or
  a duration and `ago` (`1h30m ago`).
- A duration: Go's form as Litestream's configuration takes it (`250ms`, `30s`, `5m`, `24h`,
  `1h30m`, `1.5h`, `0`), or a bare number of seconds (`1`, `0.5`).
- Printed: Go's RFC3339Nano in UTC (trailing zeros of the fraction dropped, `Z`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?$")
_RELATIVE_WORDS = re.compile(
    r"^(\d+(?:\.\d+)?)\s*(second|sec|s|minute|min|m|hour|h|day|d|week|w)s?\s+ago$", re.IGNORECASE)
_RELATIVE_DURATION = re.compile(r"^(\S+)\s+ago$", re.IGNORECASE)
_WORD_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
                 "d": 86400, "day": 86400, "w": 604800, "week": 604800}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SECONDS = re.compile(r"^\d+(?:\.\d*)?$|^\.\d+$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TIME_FORMS = "RFC 3339 (2006-01-02T15:04:05Z) or a relative time like '5 minutes ago'"
DURATION_FORMS = "a duration such as 250ms, 30s, 5m, 1h30m, or a number of seconds"


class TimeFormatError(ValueError):
    """A time or duration that cannot be parsed; `text` is what was given."""

    def __init__(self, text: str, reason: str, what: str = "time") -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid {what} {text!r}: {reason}")


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 time, as an aware datetime in UTC (microseconds; further digits dropped)."""
    m = _RFC3339.match(text.strip())
    if m is None:
        raise TimeFormatError(text, f"expected {TIME_FORMS}")
    day, clock, frac, zone = m.groups()
    if zone is None:
        raise TimeFormatError(text, "no time zone (add Z or an offset such as +02:00)")
    micros = (frac or "").ljust(6, "0")[:6]
    try:
        when = datetime.fromisoformat(f"{day}T{clock}.{micros}" + ("+00:00" if zone in ("Z", "z") else zone))
    except ValueError as exc:
        raise TimeFormatError(text, f"not a valid date and time ({exc})") from exc
    return when.astimezone(UTC)


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """RFC 3339, or a time relative to `now` (default: the current time) such as '5 minutes ago'."""
    value = text.strip()
    m = _RELATIVE_DURATION.match(value)
    if m:  # one word before 'ago': a duration ('250ms ago' is not 250 minutes), else '1d ago'
        try:
            return (now or datetime.now(UTC)) - parse_duration(m.group(1))
        except TimeFormatError:
            pass
    m = _RELATIVE_WORDS.match(value)
    if m:
        return (now or datetime.now(UTC)) - timedelta(seconds=float(m.group(1)) * _WORD_SECONDS[m.group(2).lower()])
    if value.lower().endswith(" ago"):
        raise TimeFormatError(text, f"expected {TIME_FORMS}")
    return parse_rfc3339(value)


def parse_duration(text: str, *, negative: bool = False) -> timedelta:
    """A Go duration (`1h30m`, `250ms`, `0`) or a number of seconds; a sign only with `negative`."""
    s = text.strip()
    sign = 1.0
    if s[:1] in ("+", "-"):
        if s[0] == "-" and not negative:
            raise TimeFormatError(text, "a duration cannot be negative", "duration")
        sign, s = (-1.0 if s[0] == "-" else 1.0), s[1:]
    if _SECONDS.match(s):
        return timedelta(seconds=sign * float(s))
    pos, total = 0, 0.0
    while pos < len(s):
        m = _GO_PART.match(s, pos)
        if m is None:
            break
        total += float(m.group(1)) * _GO_UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise TimeFormatError(text, f"expected {DURATION_FORMS}", "duration")
    return timedelta(seconds=sign * total)


def format_time(when: datetime) -> str:
    """Go's time.RFC3339Nano of `when` in UTC (a naive datetime is taken as local time)."""
    when = when.astimezone(UTC)
    out = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        out += "." + f"{when.microsecond:06d}".rstrip("0")
    return out + "Z"


def to_millis(when: datetime) -> int:
    """Milliseconds since the epoch (finer parts dropped)."""
    return (when.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)


def from_millis(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


__all__ = ["DURATION_FORMS", "TIME_FORMS", "TimeFormatError", "format_time", "from_millis", "parse_duration",
           "parse_rfc3339", "parse_time", "to_millis"]
