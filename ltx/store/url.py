"""Store URLs in Litestream's forms, and a redaction helper for putting URLs in messages.

- `file:///abs/path` or a plain path: a FileStore rooted there (a relative path names the directory
  it names from the current directory, as the VFS's default replica `./x.db-ltx` is written).
- `s3://BUCKET/PATH?endpoint=…&region=…&force-path-style=true&skip-verify=true`: an S3Store.
  `forcePathStyle` / `skipVerify` (Litestream's spelling) are accepted too; an endpoint without a
  scheme gets `http://`, and an endpoint implies path-style addressing unless told otherwise
  (both as Litestream does). Credentials never come from the URL: AWS environment and files only.
"""

from __future__ import annotations

import os
import posixpath
import re
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from ltx.store.base import InvalidURLError, ObjectStore

#: S3 query parameters we use, by every spelling Litestream accepts.
S3_PARAMETERS = {
    "endpoint": "endpoint",
    "region": "region",
    "force-path-style": "force_path_style",
    "forcePathStyle": "force_path_style",
    "skip-verify": "skip_verify",
    "skipVerify": "skip_verify",
}
#: Litestream S3 parameters that change nothing for this client (it always signs payloads and
#: sends checksums), accepted so that a Litestream URL works unchanged.
S3_IGNORED_PARAMETERS = frozenset({"sign-payload", "signPayload", "require-content-md5",
                                   "requireContentMD5"})
#: Query parameter names whose values `redact_url` hides.
_SECRET_NAME = re.compile(r"secret|password|passwd|token|signature|credential|key|auth", re.I)
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_TRUE = frozenset({"true", "1", "t", "yes", "on"})
_FALSE = frozenset({"false", "0", "f", "no", "off"})
REDACTED = "REDACTED"


def redact_url(url: str) -> str:
    """`url` without user info (`user:pass@`) and with secret-looking query values hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if not parts.scheme:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    pieces = []
    for piece in parts.query.split("&") if parts.query else []:
        name, sep, _ = piece.partition("=")
        pieces.append(f"{name}={REDACTED}" if sep and _SECRET_NAME.search(unquote(name)) else piece)
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(pieces), parts.fragment))


def _parse_bool(shown: str, name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidURLError(shown, f"query parameter {name}={value!r} is not a boolean (true/false)")


def open_store(url: str) -> ObjectStore:
    """Open the store a URL names; InvalidURLError (with the reason) when it cannot be used."""
    shown = redact_url(url)
    if not url.strip():
        raise InvalidURLError(shown, "empty URL: give a directory, file:///abs/path or s3://bucket/path")
    if url.startswith("/"):
        return _open_file(shown, url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidURLError(shown, f"not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if not scheme:  # a relative local path: the directory it names
        return _open_file(shown, os.path.abspath(url))
    if "@" in parts.netloc:
        raise InvalidURLError(shown, "credentials in the URL are not accepted: set AWS_ACCESS_KEY_ID "
                              "and AWS_SECRET_ACCESS_KEY or use an AWS profile")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidURLError(shown, f"a file URL takes an absolute path (file:///abs/path); "
                                  f"{parts.netloc!r} would be a host name")
        if parts.query:
            raise InvalidURLError(shown, "a file URL takes no query parameters")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise InvalidURLError(shown, "a file URL needs an absolute path (file:///abs/path)")
        return _open_file(shown, path)
    if scheme == "s3":
        return _open_s3(shown, parts.netloc, unquote(parts.path), parts.query)
    raise InvalidURLError(shown, f"unknown scheme {parts.scheme!r}: use file:///abs/path or "
                          "s3://bucket/path")


def _open_file(shown: str, path: str) -> ObjectStore:
    if "\x00" in path:
        raise InvalidURLError(shown, "the path contains a NUL character")
    root = posixpath.normpath(path)
    from ltx.store.file import FileStore  # here, so that S3 users never load the file store

    return FileStore(root, url=f"file://{root}")


def _open_s3(shown: str, bucket: str, path: str, query: str) -> ObjectStore:
    if not bucket:
        raise InvalidURLError(shown, "missing bucket: use s3://BUCKET/PATH")
    if bucket.lower().startswith("arn"):
        raise InvalidURLError(shown, "S3 access point ARNs are not supported: name the bucket")
    if not _BUCKET.match(bucket):
        raise InvalidURLError(shown, f"invalid bucket name {bucket!r} (a port or endpoint belongs in "
                              "?endpoint=…)")
    prefix = posixpath.normpath("/" + path).lstrip("/") if path else ""
    if prefix == ".":
        prefix = ""
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in S3_IGNORED_PARAMETERS:
            continue
        option = S3_PARAMETERS.get(name)
        if option is None:
            accepted = ", ".join(sorted(S3_PARAMETERS))
            raise InvalidURLError(shown, f"unknown query parameter {name!r} (accepted: {accepted})")
        if option in options and options[option] != value:
            raise InvalidURLError(shown, f"query parameter {name!r} given twice with different values")
        options[option] = value
    endpoint = options.get("endpoint") or None
    if endpoint is not None:
        if not endpoint.startswith(("http://", "https://")):
            endpoint = "http://" + endpoint
        try:
            host = urlsplit(endpoint).hostname
        except ValueError:
            host = None
        if not host:
            raise InvalidURLError(shown, f"endpoint {endpoint!r} has no host")
    if "force_path_style" in options:
        force_path_style = _parse_bool(shown, "force-path-style", options["force_path_style"])
    else:
        force_path_style = endpoint is not None
    skip_verify = _parse_bool(shown, "skip-verify", options.get("skip_verify", "false"))

    region = options.get("region") or None
    from ltx.store.s3 import S3Store  # here, so that file-only users never load the S3 code

    return S3Store(bucket, prefix, endpoint=endpoint, region=region, force_path_style=force_path_style,
                   skip_verify=skip_verify)
