"""Key rules every store enforces, so a key means the same object on every backend."""

from __future__ import annotations

import re

from ltx.store.base import InvalidKeyError

#: Longest key accepted (S3's limit, in UTF-8 bytes).
MAX_KEY_BYTES = 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Segments of ASCII letters, digits, '_' and '-' with inner dots (no '.'/'..' segment possible),
#: joined by single '/': always valid, and at most _PLAIN_MAX long, within MAX_KEY_BYTES.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*(?:/[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)*")
_PLAIN_MAX = MAX_KEY_BYTES


def check_key(url: str, key: str) -> str:
    """Return `key` if it is a clean relative '/'-separated path; raise InvalidKeyError otherwise.

    Refused: empty keys, a leading '/', empty, '.' or '..' segments (also a trailing '/'), NUL and
    other control characters, backslashes, lone surrogates, and keys longer than MAX_KEY_BYTES.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError(url, "", f"invalid key {key!r}: a key must be a non-empty string")
    if _PLAIN_KEY.fullmatch(key) and len(key) <= _PLAIN_MAX:
        return key  # the common case (LTX names, block keys), checked in one step
    shown = repr(key) if len(key) <= 200 else repr(key[:200] + "…")
    if _CONTROL.search(key):
        raise InvalidKeyError(url, "", f"invalid key {shown}: control characters (NUL, newline, …)")
    if "\\" in key:
        raise InvalidKeyError(url, "", f"invalid key {shown}: backslashes are not allowed")
    if key.startswith("/"):
        raise InvalidKeyError(url, "", f"invalid key {shown}: keys are relative (no leading '/')")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKeyError(url, "", f"invalid key {shown}: empty, '.' or '..' path segment")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(url, "", f"invalid key {shown}: not valid Unicode text") from exc
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidKeyError(url, "", f"invalid key {shown}: longer than {MAX_KEY_BYTES} bytes")
    return key


def check_prefix(url: str, prefix: str) -> str:
    """Return `prefix` if it is empty or a valid key start (it may end with '/')."""
    if prefix == "":
        return prefix
    body = prefix[:-1] if prefix.endswith("/") else prefix
    if not body:
        raise InvalidKeyError(url, "", "invalid prefix '/': prefixes are relative")
    check_key(url, body)
    return prefix
