"""The `litestream-timestamp` object metadata: the LTX header timestamp as Litestream writes it.

Litestream 0.5.17 (s3/replica_client.go, WriteLTXFile) stores
`time.UnixMilli(hdr.Timestamp).UTC().Format(time.RFC3339Nano)`: UTC with a `Z`, and a fraction
with trailing zeros removed (none at all on a whole second), e.g. `2023-11-14T22:13:20.12Z`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

#: Metadata key Litestream uses (sent as the `x-amz-meta-litestream-timestamp` header).
METADATA_KEY_TIMESTAMP = "litestream-timestamp"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


def format_timestamp(timestamp_ms: int) -> str:
    """Format milliseconds since the epoch exactly as Go's RFC3339Nano does for a UTC time."""
    moment = _EPOCH + timedelta(milliseconds=timestamp_ms)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = timestamp_ms % 1000
    if millis:
        text += "." + f"{millis:03d}".rstrip("0")
    return text + "Z"


def parse_timestamp(text: str) -> int:
    """Parse an RFC 3339 timestamp (as Litestream writes or any offset) to milliseconds since the
    epoch; ValueError if it is not one."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        moment -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    millis = int((fraction + "000")[:3]) if fraction else 0
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + millis
