"""botocore sessions shared between stores: creating one costs ~200 ms, a client from it ~10 ms.
Loaded only where botocore earns its place: the credential chain (profiles, SSO, roles), a
profile's region, and multipart uploads (s3_multipart.py).

A session caches the credentials it resolved, so sessions are shared only between stores opened
under the same AWS_* environment (a test or a tool that changes it gets a fresh session).
Client creation from a shared session is serialised: botocore sessions are not thread-safe.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import botocore.session

#: Distinct AWS environments whose sessions are kept.
MAX_CACHED_SESSIONS = 8

_lock = threading.Lock()
_sessions: dict[str, botocore.session.Session] = {}


def _environment_key() -> str:
    """A digest of every AWS_* variable (no secret is kept in the clear)."""
    digest = hashlib.sha256()
    for name, value in sorted(os.environ.items()):
        if name.startswith("AWS_"):
            digest.update(f"{name}={value}\0".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _session() -> botocore.session.Session:
    key = _environment_key()
    session = _sessions.get(key)
    if session is None:
        session = botocore.session.get_session()
        if len(_sessions) >= MAX_CACHED_SESSIONS:
            _sessions.pop(next(iter(_sessions)))
        _sessions[key] = session
    return session


def credentials() -> Any:
    """botocore's credentials from its chain, or None."""
    with _lock:
        return _session().get_credentials()


def config_region() -> str | None:
    """The region the AWS configuration (profile) names, or None."""
    with _lock:
        return _session().get_config_variable("region")


def create_client(**kwargs: Any) -> Any:
    """An S3 client from the shared session (serialised: sessions are not thread-safe)."""
    with _lock:
        return _session().create_client("s3", **kwargs)
