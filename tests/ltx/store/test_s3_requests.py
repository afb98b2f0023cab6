"""The S3 store's own requests against the real server: no botocore on the read path or for a
commit's PUT, listing pages, refused credentials, a body cut short never stored, and where the
credentials come from (AWS_*, falling back to LITESTREAM_* as the litestream binary does)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ltx.store import open_store
from ltx.store.base import ObjectNotFoundError, StoreAuthError
from ltx.store.s3 import METADATA_KEY_PUT_ID, MIN_PART_SIZE, S3Store
from ltx.store.s3_credentials import env_credentials
from ltx.store.sigv4 import canonical_query, encode_path
from tests.s3server import S3Server


def _s3(url: str) -> S3Store:
    store = open_store(url)
    assert isinstance(store, S3Store)
    return store


def test_listing_pages_follow_continuation_tokens(s3_url: str) -> None:
    store = _s3(s3_url)
    keys = [f"k/{i:05d}" for i in range(1005)]
    for key in keys:
        store.put(key, b"")
    before = store.stats.lists
    assert [o.key for o in store.list("k/")] == keys
    assert store.stats.lists - before == 2


def test_refused_credentials(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all")
    store = _s3(s3_url)
    with pytest.raises(StoreAuthError) as info:
        store.get("anything")
    assert "not-the-secret-at-all" not in str(info.value)


@pytest.mark.parametrize("code", [
    "assert [o.key for o in s.list('')] == ['a.bin']; assert s.get('a.bin') == b'hello'; "
    "assert s.get_range('a.bin', 1, 3) == b'ell'; assert s.head('a.bin').size == 5",
    "s.put('d.bin', b'x', if_absent=True, timestamp_ms=5); s.delete('a.bin')",
])
def test_no_botocore_to_read_or_commit(s3_server: S3Server, s3_url: str, code: str) -> None:
    """A reader process lists and reads, and a writer's commit PUTs, without importing botocore."""
    _s3(s3_url).put("a.bin", b"hello")
    program = (f"import sys; from ltx.store import open_store; s = open_store(sys.argv[1]); {code}; "
               "print('botocore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", program, s3_url], env=s3_server.env(), capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("sent", [0, 10, 3000])
def test_a_body_cut_short_is_never_stored(s3_url: str, sent: int) -> None:
    """A writer killed while sending a PUT: the server gets the headers and part of the body, then
    the connection closes. The checksums the PUT sends make the server store nothing (with an
    unsigned payload SeaweedFS keeps the short body as the object)."""
    store = _s3(s3_url)
    body = bytes(range(256)) * 24
    path, extra, signed = store.put_request("0000/cut.ltx", body, {METADATA_KEY_PUT_ID: "x"}, if_absent=True)
    headers = {**store.sign("PUT", path, signed), **extra, "content-length": str(len(body))}
    host, port = store.host.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode() + body[:sent])
        sock.shutdown(socket.SHUT_WR)
        sock.recv(4096)  # the server's answer (an error) or the close: it has finished with it
    with pytest.raises(ObjectNotFoundError):
        store.head("0000/cut.ltx")
    store.put("0000/cut.ltx", body, if_absent=True, timestamp_ms=1)  # the name is still free
    assert store.get("0000/cut.ltx") == body
    store.close()


@pytest.mark.parametrize("aws", [False, True])
def test_litestream_credential_variables(s3_server: S3Server, s3_url: str, monkeypatch: pytest.MonkeyPatch,
                                         aws: bool) -> None:
    """LITESTREAM_ACCESS_KEY_ID / LITESTREAM_SECRET_ACCESS_KEY serve where the AWS ones are unset;
    set, the AWS ones win (litestream's s3/replica_client.go reads AWS_* first)."""
    access, secret = s3_server.access_key, s3_server.secret_key
    monkeypatch.setenv("LITESTREAM_ACCESS_KEY_ID", access if not aws else "LITESTREAM-WRONG-KEY")
    monkeypatch.setenv("LITESTREAM_SECRET_ACCESS_KEY", secret if not aws else "litestream-wrong-secret")
    if aws:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    else:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    found = env_credentials()
    assert found is not None and (found.access_key, found.secret_key) == (access, secret)
    store = _s3(s3_url)
    store.put("k.bin", b"v", if_absent=True)
    assert store.get("k.bin") == b"v"
    # A multipart upload (boto3's client) gets the same credentials.
    bucket, _, prefix = s3_url.split("?")[0].removeprefix("s3://").partition("/")
    parts = S3Store(bucket, prefix, endpoint=s3_server.endpoint, region=s3_server.region, force_path_style=True,
                    multipart_threshold=MIN_PART_SIZE, part_size=MIN_PART_SIZE)
    parts.put("big.bin", bytes(MIN_PART_SIZE + 1), if_absent=True)
    assert store.head("big.bin").size == MIN_PART_SIZE + 1
    parts.close()
    program = ("import sys; from ltx.store import open_store; s = open_store(sys.argv[1]); "
               "print(s.get('k.bin').decode())")
    env = s3_server.env()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "LITESTREAM_ACCESS_KEY_ID",
                 "LITESTREAM_SECRET_ACCESS_KEY"):
        env.pop(name, None)
    env.update(LITESTREAM_ACCESS_KEY_ID=access, LITESTREAM_SECRET_ACCESS_KEY=secret)
    out = subprocess.run([sys.executable, "-c", program, s3_url], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "v"


def test_one_half_of_a_pair_in_each_family(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each variable falls back on its own, as litestream reads them."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LITESTREAM_ACCESS_KEY_ID", "AKIDLITESTREAM")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    found = env_credentials()
    assert found is not None and (found.access_key, found.secret_key) == ("AKIDLITESTREAM", "aws-secret-value")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("LITESTREAM_SECRET_ACCESS_KEY", raising=False)
    assert env_credentials() is None


def test_canonical_forms() -> None:
    assert encode_path("/b/odd key/with space+plus~.bin") == "/b/odd%20key/with%20space%2Bplus~.bin"
    assert canonical_query({"prefix": "a/b c", "list-type": "2"}) == "list-type=2&prefix=a%2Fb%20c"


def test_credentials_from_a_profile_through_botocores_chain(s3_server: S3Server, s3_url: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """No keys in the environment: the credential chain (here a shared credentials file and a
    named profile) supplies them, loaded only then."""
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[ltxvfs-test]\naws_access_key_id = {s3_server.access_key}\n"
                           f"aws_secret_access_key = {s3_server.secret_key}\n")
    env = s3_server.env()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "LITESTREAM_ACCESS_KEY_ID",
                 "LITESTREAM_SECRET_ACCESS_KEY"):
        env.pop(name, None)
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(credentials), AWS_PROFILE="ltxvfs-test",
               AWS_CONFIG_FILE=str(tmp_path / "no-config"))
    program = ("import sys; from ltx.store import open_store; s = open_store(sys.argv[1]); "
               "s.put('p.bin', b'from a profile', if_absent=True); print(s.get('p.bin').decode()); "
               "print('botocore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", program, s3_url], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split("\n")[:2] == ["from a profile", "True"]
    env["AWS_PROFILE"] = "no-such-profile"
    failed = subprocess.run([sys.executable, "-c", program, s3_url], env=env, capture_output=True, text=True)
    assert failed.returncode != 0 and s3_server.secret_key not in failed.stderr
    assert "StoreAuthError" in failed.stderr and "ProfileNotFound" in failed.stderr
