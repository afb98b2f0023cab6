"""Object stores chosen by URL: `file:///path` and `s3://bucket/path?endpoint=…`."""

from ltx.store.base import (
    BucketNotFoundError,
    InvalidKeyError,
    InvalidURLError,
    ObjectExistsError,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectRangeError,
    ObjectStore,
    StoreAuthError,
    StoreError,
    StoreStats,
    StoreUnavailableError,
)
from ltx.store.url import open_store, redact_url

__all__ = [
    "BucketNotFoundError",
    "InvalidKeyError",
    "InvalidURLError",
    "ObjectExistsError",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectRangeError",
    "ObjectStore",
    "StoreAuthError",
    "StoreError",
    "StoreStats",
    "StoreUnavailableError",
    "open_store",
    "redact_url",
]
