"""Store URLs (Litestream's forms) and their redaction for messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltx.store import InvalidURLError, open_store, redact_url
from ltx.store.file import FileStore
from ltx.store.s3 import S3Store


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening an S3 store resolves credentials (no request is made by these tests)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.mark.parametrize("form", ["file://{}", "{}", "file://localhost{}", "file://{}/", "file://{}/./x/.."])
def test_file_forms(tmp_path: Path, form: str) -> None:
    store = open_store(form.format(tmp_path))
    assert isinstance(store, FileStore)
    assert store.root == str(tmp_path)
    assert store.url == f"file://{tmp_path}"


@pytest.mark.parametrize("form", ["x.db-ltx", "./x.db-ltx", "sub/../x.db-ltx"])
def test_a_relative_path_is_the_directory_it_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    form: str) -> None:
    # The VFS's default replica of apsw.Connection("x.db", vfs="ltxvfs") is ./x.db-ltx.
    monkeypatch.chdir(tmp_path)
    store = open_store(form)
    assert isinstance(store, FileStore)
    assert store.root == str(tmp_path / "x.db-ltx")
    assert store.url == f"file://{tmp_path}/x.db-ltx"


def test_file_url_percent_decoding(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/with%20space")
    assert isinstance(store, FileStore) and store.root == f"{tmp_path}/with space"


@pytest.mark.parametrize("url,reason", [
    ("", "empty URL"),
    ("  ", "empty URL"),
    ("file://relative/path", "would be a host name"),
    ("file:relative", "absolute path"),
    ("file:///tmp/x?opt=1", "no query parameters"),
    ("gs://bucket/path", "unknown scheme 'gs'"),
    ("abs://container/path", "unknown scheme"),
    ("s3:///path/only", "missing bucket"),
    ("s3://", "missing bucket"),
    ("s3://bucket:9000/path", "invalid bucket name"),
    ("s3://arn:aws:s3:us-east-1:123:accesspoint/ap/path", "ARNs are not supported"),
    ("s3://bucket/p?endpoint=localhost:9000&unknown=1", "unknown query parameter 'unknown'"),
    ("s3://bucket/p?force-path-style=maybe", "not a boolean"),
    ("s3://bucket/p?skip-verify=yes&skipVerify=no", "given twice"),
    ("s3://bucket/p?endpoint=http://", "has no host"),
])
def test_unusable_urls(url: str, reason: str, fake_credentials: None) -> None:
    with pytest.raises(InvalidURLError) as caught:
        open_store(url)
    assert reason in caught.value.reason
    assert str(caught.value).startswith(redact_url(url))


def test_credentials_in_the_url_are_refused_and_not_shown(fake_credentials: None) -> None:
    with pytest.raises(InvalidURLError) as caught:
        open_store("s3://AKIAEXAMPLE:s3cr3t-value@bucket/path?endpoint=localhost:9000")
    assert "s3cr3t-value" not in str(caught.value) and "AKIAEXAMPLE" not in str(caught.value)
    assert "AWS_ACCESS_KEY_ID" in caught.value.reason


def test_s3_url_like_litestream(fake_credentials: None) -> None:
    store = open_store("s3://my-bucket/some/db/?endpoint=127.0.0.1:9000&region=eu-west-1")
    assert isinstance(store, S3Store)
    assert store.bucket == "my-bucket"
    assert store.prefix == "some/db"
    assert store.endpoint == "http://127.0.0.1:9000"  # a scheme-less endpoint gets http://
    assert store.region == "eu-west-1"
    assert store.url == "s3://my-bucket/some/db"
    assert store.host == "127.0.0.1:9000"  # an endpoint implies path style: the bucket is in the path


@pytest.mark.parametrize("query,host", [
    ("endpoint=http://h:1&force-path-style=true", "h:1"),
    ("endpoint=http://h:1&forcePathStyle=false", "bucket.h:1"),
    ("endpoint=http://h:1&force-path-style=false", "bucket.h:1"),
    ("forcePathStyle=true", "s3.us-east-1.amazonaws.com"),
    ("", "bucket.s3.us-east-1.amazonaws.com"),
])
def test_path_style_spellings(fake_credentials: None, query: str, host: str) -> None:
    store = open_store(f"s3://bucket/p?{query}")
    assert isinstance(store, S3Store)
    assert store.host == host  # path style: the bucket goes in the path, else in the host name


def test_s3_defaults(fake_credentials: None) -> None:
    store = open_store("s3://bucket")
    assert isinstance(store, S3Store)
    assert store.prefix == "" and store.region == "us-east-1" and store.endpoint is None
    assert open_store("s3://bucket/a//b/../c").prefix == "a/c"  # type: ignore[attr-defined]


def test_litestream_only_parameters_are_accepted(fake_credentials: None) -> None:
    store = open_store("s3://bucket/p?sign-payload=true&requireContentMD5=false&skipVerify=true")
    assert isinstance(store, S3Store)


@pytest.mark.parametrize("url,shown", [
    ("s3://user:pass@bucket/p?endpoint=http://h:1", "s3://bucket/p?endpoint=http://h:1"),
    ("s3://bucket/p?endpoint=http://h:1&secret-access-key=abc&token=xyz",
     "s3://bucket/p?endpoint=http://h:1&secret-access-key=REDACTED&token=REDACTED"),
    ("file:///tmp/x", "file:///tmp/x"),
    ("/plain/path", "/plain/path"),
    ("s3://bucket/p?AWSAccessKeyId=AKIA&Signature=sig", "s3://bucket/p?AWSAccessKeyId=REDACTED&Signature=REDACTED"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
