"""Object stores chosen by URL: `file:///path` and `s3://bucket/path?endpoint=…`."""

from ltx.store.base import (
    BucketNotFoundError,
    InvalidURLError,
    ObjectExistsError,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    StoreAuthError,
    StoreError,
    StoreStats,
    StoreUnavailableError,
)
from ltx.store.url import open_store

__all__ = [
    "BucketNotFoundError",
    "InvalidURLError",
    "ObjectExistsError",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "StoreAuthError",
    "StoreError",
    "StoreStats",
    "StoreUnavailableError",
    "open_store",
]
