"""Built replica shapes kept on disk between benchmark sessions (the S3 server is new each session).
Only shapes the real Litestream wrote are kept: ours depend on the code under test, so they are
built by the code of the session that measures them.

Building a shape takes from seconds to minutes (a 5 GB `ltxctl import`, `litestream replicate`
and the `litestream restore` that makes its reference take about a minute each here), so once
built, its objects (with their metadata) and its reference database are copied into
$LTXVFS_BENCH_CACHE/replicas/<id>/ (never into the repository), and a later session uploads them
to its server instead of building again. A cache entry is named by the replica id and a version
that changes when the databases' generator (databases.GENERATOR_VERSION) or this layout does;
its manifest is written last, so an entry cut short by a crash is rebuilt.

    BENCH_REPLICA_CACHE=0   build every shape afresh (and do not keep them)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness.databases import GENERATOR_VERSION, cache_dir

ENV_REPLICA_CACHE = "BENCH_REPLICA_CACHE"
#: Bumped when what a shape's builder writes changes.
LAYOUT_VERSION = 1
MANIFEST = "manifest.json"
REFERENCE = "reference.db"
PARALLELISM = 16
#: Larger cached objects are uploaded in parts.
SINGLE_PUT_BYTES = 64 << 20


def enabled() -> bool:
    return os.environ.get(ENV_REPLICA_CACHE, "1") != "0"


def entry(replica_id: str) -> Path:
    return cache_dir() / "replicas" / f"{replica_id}-g{GENERATOR_VERSION}-l{LAYOUT_VERSION}"


def _objects(client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend(page.get("Contents", []))
    return out


def save(client: Any, bucket: str, prefix: str, replica_id: str, reference: Path, keep_reference: bool) -> Path:
    """Copy the objects under `prefix/` and the reference into the cache; return the cached
    reference's path (`reference` itself when it already lives in the cache, e.g. a database)."""
    where = entry(replica_id)
    if where.exists():
        shutil.rmtree(where)
    objects_dir = where / "objects"
    objects_dir.mkdir(parents=True)
    listed = _objects(client, bucket, prefix.rstrip("/") + "/")

    def fetch(item: dict[str, Any]) -> dict[str, Any]:
        key = item["Key"][len(prefix.rstrip("/")) + 1:]
        got = client.get_object(Bucket=bucket, Key=item["Key"])
        path = objects_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            shutil.copyfileobj(got["Body"], f, 1 << 20)
        return {"key": key, "size": item["Size"], "metadata": got.get("Metadata", {})}

    with ThreadPoolExecutor(PARALLELISM) as pool:
        manifest = list(pool.map(fetch, listed))
    kept = reference
    if keep_reference:  # moved: the builder's copy is not used again
        kept = where / REFERENCE
        shutil.move(reference, kept)
    (where / MANIFEST).write_text(json.dumps({"objects": manifest, "reference": str(kept)}))
    return kept


def load(client: Any, bucket: str, prefix: str, replica_id: str) -> Path | None:
    """Upload a cached shape under `prefix/`; its reference's path, or None when not cached."""
    where = entry(replica_id)
    manifest_path = where / MANIFEST
    if not manifest_path.exists():
        return None
    manifest = json.loads(manifest_path.read_text())
    reference = Path(manifest["reference"])
    if not reference.exists():
        return None

    def put(item: dict[str, Any]) -> None:
        path, key = where / "objects" / item["key"], f"{prefix.rstrip('/')}/{item['key']}"
        if item["size"] > SINGLE_PUT_BYTES:  # in parts, as boto3's transfer manager sends them
            client.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": item["metadata"]})
            return
        with open(path, "rb") as f:
            client.put_object(Bucket=bucket, Key=key, Body=f, Metadata=item["metadata"])

    with ThreadPoolExecutor(PARALLELISM) as pool:
        list(pool.map(put, manifest["objects"]))
    return reference


def cached_shape(client: Any, bucket: str, prefix: str, replica_id: str, build: Callable[[], Path],
                 keep_reference: bool) -> Path:
    """The shape's reference after uploading it from the cache, or after `build()` (which writes
    the shape under `prefix/` and returns its reference), saving it for the next session."""
    if enabled():
        found = load(client, bucket, prefix, replica_id)
        if found is not None:
            return found
    reference = build()
    if enabled():
        return save(client, bucket, prefix, replica_id, reference, keep_reference)
    return reference
