"""Multipart uploads of large objects through boto3, loaded only when an object is that large.

The parts, the completion (with `If-None-Match: *` for a create-if-absent) and the abort are
boto3 calls under the store's retry policy, counted in the store's stats; botocore's own retries
are off. A completion that meets a taken key, or (on a retry) finds its upload gone, asks the
store whether an earlier attempt completed it (S3Store.is_own_put), the rule a single PUT follows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import botocore.config
import botocore.exceptions

from ltx.store import s3_session
from ltx.store.base import ObjectExistsError
from ltx.store.s3_credentials import ca_bundle
from ltx.store.s3_errors import error_for_botocore
from ltx.store.sigv4 import Credentials

if TYPE_CHECKING:
    from ltx.store.s3 import S3Store

T = TypeVar("T")


class MultipartUploader:
    """Uploads in parts for one S3Store."""

    def __init__(self, store: S3Store, *, endpoint: str | None, force_path_style: bool, skip_verify: bool,
                 connect_timeout: float, read_timeout: float, credentials: Credentials | None) -> None:
        self._store = store
        config = botocore.config.Config(
            region_name=store.region,
            signature_version="s3v4",
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            tcp_keepalive=True,
            s3={"addressing_style": "path" if force_path_style else "auto"},
        )
        verify: bool | str = False if skip_verify else (ca_bundle() or True)
        keys: dict[str, Any] = {}
        if credentials is not None:  # from the environment (LITESTREAM_* too): hand them over as they are
            keys = {"aws_access_key_id": credentials.access_key, "aws_secret_access_key": credentials.secret_key,
                    "aws_session_token": credentials.token}
        self._client: Any = s3_session.create_client(region_name=store.region, endpoint_url=endpoint,
                                                     config=config, verify=verify, **keys)

    def _call(self, key: str, op: str, call: Callable[[], T], *, count: str = "puts") -> T:
        store = self._store

        def attempt(_: int) -> T:
            store.count(count)
            try:
                return call()
            except Exception as exc:
                mapped = self._mapped(exc, key, op)
                if mapped is exc:
                    raise
                raise mapped from exc

        return store.retrying(key, attempt)

    def _mapped(self, exc: Exception, key: str, op: str) -> Exception:
        return error_for_botocore(exc, self._store.url, key, op, bucket=self._store.bucket,
                                  scrub=self._store.scrub, write=True)

    def upload(self, key: str, parts: Iterator[bytes], metadata: dict[str, str], if_absent: bool) -> None:
        store = self._store
        bucket, full = store.bucket, store.full_key(key)
        created = self._call(key, "create multipart upload",
                             lambda: self._client.create_multipart_upload(Bucket=bucket, Key=full, Metadata=metadata))
        upload_id = created["UploadId"]
        done: list[dict[str, Any]] = []

        def send_part(number: int, chunk: bytes) -> Any:
            return self._client.upload_part(Bucket=bucket, Key=full, UploadId=upload_id, PartNumber=number,
                                            Body=chunk)

        try:
            for number, chunk in enumerate(parts, start=1):
                store.count("bytes_written", len(chunk))
                out = self._call(key, f"upload part {number}", functools.partial(send_part, number, chunk))
                done.append({"PartNumber": number, "ETag": out["ETag"]})
            complete: dict[str, Any] = {"Bucket": bucket, "Key": full, "UploadId": upload_id,
                                        "MultipartUpload": {"Parts": done}}
            if if_absent:
                complete["IfNoneMatch"] = "*"

            def attempt(number: int) -> None:
                store.count("puts")
                try:
                    self._client.complete_multipart_upload(**complete)
                except Exception as exc:
                    mapped = self._mapped(exc, key, "complete multipart upload")
                    if mapped is exc:
                        raise
                    gone = number > 0 and _error_code(exc) == "NoSuchUpload"
                    if (isinstance(mapped, ObjectExistsError) or gone) and store.is_own_put(key, metadata):
                        return
                    raise mapped from exc

            store.retrying(key, attempt)
        except BaseException:
            self._abort(full, upload_id)
            raise

    def _abort(self, full: str, upload_id: str) -> None:
        """Best effort: a failed abort leaves parts that the bucket's lifecycle rules reclaim."""
        self._store.count("deletes")
        try:
            self._client.abort_multipart_upload(Bucket=self._store.bucket, Key=full, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            pass

    def close(self) -> None:
        self._client.close()


def _error_code(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""
