"""The `litestream-timestamp` object metadata: the LTX header timestamp as Litestream writes it.

Litestream 0.5.17 (s3/replica_client.go, WriteLTXFile) stores
`time.UnixMilli(hdr.Timestamp).UTC().Format(time.RFC3339Nano)`: UTC with a `Z`, and a fraction
with trailing zeros removed (none at all on a whole second), e.g. `2023-11-14T22:13:20.12Z`.
"""

from __future__ import annotations

from ltx.timefmt import format_time, from_millis, parse_rfc3339, to_millis

#: Metadata key Litestream uses (sent as the `x-amz-meta-litestream-timestamp` header).
METADATA_KEY_TIMESTAMP = "litestream-timestamp"


def format_timestamp(timestamp_ms: int) -> str:
    """Format milliseconds since the epoch exactly as Go's RFC3339Nano does for a UTC time."""
    return format_time(from_millis(timestamp_ms))


def parse_timestamp(text: str) -> int:
    """Parse an RFC 3339 timestamp (as Litestream writes or any offset) to milliseconds since the
    epoch; ValueError (TimeFormatError) if it is not one."""
    return to_millis(parse_rfc3339(text))
