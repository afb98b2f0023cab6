"""Times as Litestream's VFS reads and prints them: RFC 3339 (nanoseconds allowed) or a relative
'5 minutes ago'; printed as Go's RFC3339Nano (trailing zeros of the fraction dropped, 'Z' for UTC)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(second|sec|s|minute|min|m|hour|h|day|d|week|w)s?\s+ago$",
                       re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
          "d": 86400, "day": 86400, "w": 604800, "week": 604800}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class TimeFormatError(ValueError):
    """A time or duration that cannot be parsed."""

    def __init__(self, text: str, expected: str) -> None:
        self.text = text
        super().__init__(f"invalid time {text!r}: expected {expected}")


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """Parse RFC 3339 (fraction up to nanoseconds, kept to microseconds) or 'N units ago'."""
    value = text.strip()
    m = _RFC3339.match(value)
    if m:
        day, clock, frac, zone = m.groups()
        micros = (frac or "").ljust(6, "0")[:6]
        iso = f"{day}T{clock}.{micros}" + ("+00:00" if zone in ("Z", "z") else zone)
        return datetime.fromisoformat(iso).astimezone(UTC)
    m = _RELATIVE.match(value)
    if m:
        seconds = float(m.group(1)) * _UNITS[m.group(2).lower()]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    raise TimeFormatError(text, "RFC 3339 (2006-01-02T15:04:05Z) or a relative time like '5 minutes ago'")


def format_time(when: datetime) -> str:
    """Go's time.RFC3339Nano of `when` in UTC."""
    when = when.astimezone(UTC)
    out = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        out += "." + f"{when.microsecond:06d}".rstrip("0")
    return out + "Z"


def parse_duration(text: str) -> float:
    """Seconds from '1.5', '250ms', '2s', '1m' or '1h'."""
    m = _DURATION.match(text.strip())
    if not m:
        raise TimeFormatError(text, "a duration such as 1, 0.5, 250ms, 2s or 1m")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
