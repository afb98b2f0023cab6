"""The volume settings: JuiceFS's `Format` JSON stored in `jfs_setting(name='format')`.

The JSON is written the way the Go binary writes it (`json.MarshalIndent(format, "", "")`: one key
per line, no indentation, keys in struct order, empty optional fields left out), so the row reads
the same whichever side wrote it. Keys blockmap does not know are kept and written back unchanged.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from blockmap.errors import VolumeFormatError

#: `jfs_setting` row names.
FORMAT_SETTING = "format"
#: blockmap's own row: the data URL exactly as given to `format` (JuiceFS ignores other rows).
DATA_URL_SETTING = "blockmap_data_url"
#: Why an S3 data URL may not carry a path (checked against the juicefs 1.4.2 binary).
S3_DATA_PATH_REASON = (
    "an S3 data URL names the bucket only: the juicefs binary ignores a path after the bucket and looks for "
    "blocks at <bucket>/<volume name>/ (use {bucket_url}; volumes share a bucket by their names)"
)

#: Default block size (JuiceFS `--block-size 4M`), and the bounds the binary accepts.
DEFAULT_BLOCK_SIZE = 4 << 20
MIN_BLOCK_SIZE = 64 << 10
MAX_BLOCK_SIZE = 16 << 20
#: What `juicefs format` writes for these fields today.
META_VERSION = 1
MIN_CLIENT_VERSION = "1.1.0-A"
DEFAULT_ENCRYPT_ALGO = "aes256gcm-rsa"
#: Volume names the binary accepts.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9\-]{1,61}[a-z0-9]$")

# Go struct field order of `meta.Format`, and whether the field is `omitempty`.
_FIELDS: tuple[tuple[str, bool], ...] = (
    ("Name", False), ("UUID", False), ("Storage", False), ("StorageClass", True), ("Tiers", False),
    ("Bucket", False), ("AccessKey", True), ("SecretKey", True), ("SessionToken", True),
    ("BlockSize", False), ("Compression", True), ("Shards", True), ("HashPrefix", True),
    ("Capacity", True), ("Inodes", True), ("EncryptKey", True), ("EncryptAlgo", True),
    ("KeyEncrypted", True), ("UploadLimit", True), ("DownloadLimit", True), ("TrashDays", False),
    ("MetaVersion", True), ("MinClientVersion", True), ("MaxClientVersion", True), ("DirStats", True),
    ("UserGroupQuota", True), ("EnableACL", False), ("RangerRestUrl", True), ("RangerService", True),
    ("ChangeLog", True), ("ChangeLogMaxAge", True), ("ChangeLogMaxLines", True), ("KerbConf", True),
)  # fmt: skip
_KNOWN = {name for name, _ in _FIELDS}


def _default_tiers() -> dict[str, Any]:
    return {"0": {"ID": 0, "StorageClass": "", "Tag": ""}}


@dataclass
class VolumeSettings:
    """The fields of JuiceFS's Format that blockmap uses; `extra` holds all the others verbatim."""

    name: str
    uuid: str
    storage: str
    bucket: str
    block_size_kib: int = DEFAULT_BLOCK_SIZE >> 10
    compression: str = "none"
    hash_prefix: bool = False
    trash_days: int = 0
    dir_stats: bool = True
    capacity: int = 0
    inodes: int = 0
    meta_version: int = META_VERSION
    min_client_version: str = MIN_CLIENT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def block_size(self) -> int:
        """Block size in bytes (the JSON holds KiB)."""
        return self.block_size_kib << 10

    @classmethod
    def new(
        cls,
        name: str,
        storage: str,
        bucket: str,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        trash_days: int = 0,
        hash_prefix: bool = False,
        dir_stats: bool = True,
        capacity: int = 0,
        inodes: int = 0,
    ) -> VolumeSettings:
        """Settings for a new volume, as `juicefs format` would write them."""
        settings = cls(
            name=name,
            uuid=str(uuidlib.uuid4()),
            storage=storage,
            bucket=bucket,
            block_size_kib=block_size >> 10,
            hash_prefix=hash_prefix,
            trash_days=trash_days,
            dir_stats=dir_stats,
            capacity=capacity,
            inodes=inodes,
            extra={
                "Tiers": _default_tiers(),
                "EncryptAlgo": DEFAULT_ENCRYPT_ALGO,
                "EnableACL": False,
            },
        )
        if block_size != settings.block_size:
            raise ValueError(f"block size {block_size} is not a whole number of KiB")
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise VolumeFormatError for settings blockmap cannot serve."""
        what = f"volume {self.name!r}"
        if not NAME_PATTERN.match(self.name):
            raise VolumeFormatError(
                what, "invalid name: only a-z, 0-9 and '-' are allowed, 3 to 63 characters"
            )
        bs = self.block_size
        if bs < MIN_BLOCK_SIZE or bs > MAX_BLOCK_SIZE or bs & (bs - 1):
            raise VolumeFormatError(what, f"block size {bs} is not a power of two in [64 KiB, 16 MiB]")
        if self.compression not in ("", "none"):
            raise VolumeFormatError(what, f"compression {self.compression!r} is not supported (only none)")
        if self.extra.get("EncryptKey"):
            raise VolumeFormatError(what, "encrypted volumes are not supported")
        if int(self.extra.get("Shards") or 0) > 1:
            raise VolumeFormatError(what, "sharded object storage is not supported")
        if self.meta_version > META_VERSION:
            raise VolumeFormatError(what, f"metadata version {self.meta_version} is newer than {META_VERSION}")
        if self.trash_days < 0:
            raise VolumeFormatError(what, f"trash days {self.trash_days} is negative")

    def _values(self) -> dict[str, Any]:
        values = dict(self.extra)
        values.update(
            Name=self.name,
            UUID=self.uuid,
            Storage=self.storage,
            Bucket=self.bucket,
            BlockSize=self.block_size_kib,
            Compression=self.compression,
            HashPrefix=self.hash_prefix,
            TrashDays=self.trash_days,
            DirStats=self.dir_stats,
            Capacity=self.capacity,
            Inodes=self.inodes,
            MetaVersion=self.meta_version,
            MinClientVersion=self.min_client_version,
        )
        values.setdefault("Tiers", _default_tiers())
        values.setdefault("EnableACL", False)
        return values

    def encode(self) -> str:
        """The JSON text, byte-compatible with Go's MarshalIndent(format, "", "")."""
        values = self._values()
        ordered: dict[str, Any] = {}
        for key, omitempty in _FIELDS:
            value = values.get(key)
            if omitempty and not value:
                continue
            ordered[key] = value
        for key in sorted(values):  # unknown keys last, so nothing is lost
            if key not in _KNOWN:
                ordered[key] = values[key]
        text = json.dumps(ordered, indent=0, ensure_ascii=False, separators=(",", ": "))
        # Go escapes these three for HTML safety; do the same so both writers agree byte for byte.
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")

    @classmethod
    def decode(cls, text: str | bytes) -> VolumeSettings:
        """Parse the JSON written by blockmap or by the juicefs binary."""
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise VolumeFormatError("jfs_setting 'format'", f"not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise VolumeFormatError("jfs_setting 'format'", "not a JSON object")
        try:
            settings = cls(
                name=str(raw["Name"]),
                uuid=str(raw.get("UUID", "")),
                storage=str(raw.get("Storage", "")),
                bucket=str(raw.get("Bucket", "")),
                block_size_kib=int(raw.get("BlockSize") or 0),
                compression=str(raw.get("Compression") or "none"),
                hash_prefix=bool(raw.get("HashPrefix", False)),
                trash_days=int(raw.get("TrashDays") or 0),
                dir_stats=bool(raw.get("DirStats", False)),
                capacity=int(raw.get("Capacity") or 0),
                inodes=int(raw.get("Inodes") or 0),
                meta_version=int(raw.get("MetaVersion") or 0),
                min_client_version=str(raw.get("MinClientVersion") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise VolumeFormatError("jfs_setting 'format'", f"bad field: {exc}") from exc
        mine = {
            "Name", "UUID", "Storage", "Bucket", "BlockSize", "Compression", "HashPrefix", "TrashDays",
            "DirStats", "Capacity", "Inodes", "MetaVersion", "MinClientVersion",
        }  # fmt: skip
        settings.extra = {k: v for k, v in raw.items() if k not in mine}
        return settings


def storage_for_data_url(data_url: str) -> tuple[str, str]:
    """JuiceFS's (Storage, Bucket) for a blockmap data URL, so the binary finds the same objects.

    For file storage the binary's bucket is a directory: any path works. For S3 the juicefs 1.4.2
    binary uses only the bucket (it drops any path after it: `--bucket http://host/bkt/sub` keeps
    blocks at `bkt/<name>/`), so an S3 data URL with a path would make a volume the binary cannot
    read: it is refused (VolumeFormatError). Volumes share a bucket by their names (`<name>/`)."""
    if data_url.startswith("/"):
        data_url = "file://" + urllib.parse.quote(data_url)
    parsed = urllib.parse.urlsplit(data_url)
    if parsed.scheme == "file":
        path = urllib.parse.unquote(parsed.path)
        if not path.startswith("/"):
            raise ValueError(f"{data_url}: a file:// data URL needs an absolute path")
        return "file", path.rstrip("/") + "/"
    if parsed.scheme == "s3":
        query = urllib.parse.parse_qs(parsed.query)
        endpoint = (query.get("endpoint") or [""])[0]
        if not endpoint:
            region = (query.get("region") or ["us-east-1"])[0]
            endpoint = f"https://s3.{region}.amazonaws.com"
        if "://" not in endpoint:
            endpoint = "http://" + endpoint  # Litestream's rule for a bare host:port
        bucket = parsed.netloc
        if parsed.path.strip("/"):
            bucket_url = urllib.parse.urlunsplit(parsed._replace(path=""))
            raise VolumeFormatError(data_url, S3_DATA_PATH_REASON.format(bucket_url=bucket_url))
        return "s3", f"{endpoint.rstrip('/')}/{bucket}"
    raise ValueError(f"{data_url}: data URL scheme must be file:// or s3://")


def data_url_for_storage(storage: str, bucket: str) -> str:
    """The blockmap data URL for a volume the binary formatted (file storage, or S3 path style).
    An S3 bucket's path is dropped, as the binary drops it: the blocks are at `<bucket>/<name>/`."""
    if storage == "file":
        return "file://" + urllib.parse.quote(bucket.rstrip("/") or "/")
    if storage in ("s3", "minio"):
        parsed = urllib.parse.urlsplit(bucket if "://" in bucket else "https://" + bucket)
        parts = parsed.path.strip("/").split("/", 1)
        if not parts or not parts[0]:
            raise VolumeFormatError("bucket " + bucket, "cannot find the bucket name in the URL")
        endpoint = f"{parsed.scheme}://{parsed.netloc}"
        return f"s3://{parts[0]}?endpoint={urllib.parse.quote(endpoint, safe=':/')}&force-path-style=true"
    raise VolumeFormatError(f"storage {storage!r}", "unsupported by blockmap (file or s3 only)")
