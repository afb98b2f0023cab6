"""Credentials stay secret. With every logger at DEBUG (ours and boto's), a tour of everything that
talks to S3 — stores, restore, compaction, the hydrator, the VFS reader and writer, `ltxctl`
info/ls/verify, retries through the fault proxy, refused credentials, a missing bucket, a URL
carrying secrets — never puts the secret key into a log record, an error (with the errors it was
raised from) or the output of `ltxctl`; our own code does not show the access key ID either.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import apsw
import pytest

from hydrator.hydrator import Hydrator
from ltx import cli, compaction
from ltx.replica import Replica
from ltx.restore import restore
from ltx.store import StoreError, open_store
from ltx.store.s3 import MIN_PART_SIZE, S3Store
from tests.reliability import tally
from tests.reliability.conftest import build_levels
from tests.reliability.rowwriter import open_writer, write_rows
from tests.s3proxy import FaultSchedule, S3Proxy
from tests.s3server import S3Server
from tests.vfs.replicas import History, connect, run_queries

#: Loggers of this project: they must not show the access key ID either (boto's own DEBUG
#: output signs requests in the open, access key ID included, but never the secret).
OUR_LOGGERS = ("ltx", "vfs", "hydrator", "blockmap")


class Seen:
    """Every text the tour produced: errors with their chains, CLI output."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def error(self, call: Callable[[], object]) -> None:
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - every error of the tour is inspected
            self.texts.append("".join(traceback.format_exception(exc)))
            self.texts.append(repr(exc))

    def cli(self, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
        cli.main(argv)
        captured = capsys.readouterr()
        self.texts += [captured.out, captured.err]


def log_texts(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(logger name, message with any exception) of every record captured."""
    out = []
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        out.append((record.name, text))
    return out


def test_credentials_never_appear_in_logs_errors_or_output(s3_server: S3Server, s3_url: str, history: History,
                                                           tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    secret, access = s3_server.secret_key, s3_server.access_key
    seen = Seen()
    replica = Replica.open(s3_url)
    build_levels(history, replica, 6)
    restore(replica, tmp_path / "restored.db")
    compaction.run(replica, [1, 2, 9])
    with Hydrator(replica, tmp_path / "hydrated.db") as hydrator:
        hydrator.run()
        hydrator.poll_once()
    replica.close()
    conn = connect(tmp_path / "reader.db", s3_url, poll=0)
    run_queries(conn)
    conn.close()
    writer_url = s3_server.url(f"{s3_url.split('?')[0].rsplit('/', 1)[1]}-writer")
    conn = open_writer(tmp_path / "writer.db", writer_url)
    write_rows(conn, 3, lambda seq: None)
    conn.close()
    # A large object goes up in parts through boto3 (the one place botocore still sends): its
    # DEBUG output, headers and all, is part of what is checked.
    parts = urlsplit(s3_url)
    big = S3Store(parts.netloc, f"{parts.path.strip('/')}-multipart", endpoint=s3_server.endpoint,
                  region=s3_server.region, force_path_style=True, multipart_threshold=MIN_PART_SIZE,
                  part_size=MIN_PART_SIZE)
    big.put("big.bin", bytes(MIN_PART_SIZE + 1), if_absent=True)
    big.close()
    for command in (["info", s3_url], ["info", "--json", s3_url], ["ls", s3_url], ["verify", s3_url]):
        seen.cli(capsys, command)

    schedule = FaultSchedule(seed=31, rate=0.4, max_in_a_row=None)
    with S3Proxy(s3_server.endpoint, schedule=schedule) as proxy:
        proxied = s3_url.replace(s3_server.endpoint, proxy.url)
        seen.error(lambda: restore(Replica.open(proxied), tmp_path / "proxied.db"))
        seen.error(lambda: run_queries(connect(tmp_path / "proxied-reader.db", proxied, poll=0, wait=0)))
        tally.add(tally.FAULTS, proxy.faults_injected)
    seen.error(lambda: list(open_store(s3_server.url("p", bucket="no-such-bucket-here")).list("")))
    seen.error(lambda: open_store(f"s3://{access}:{secret}@bucket/p"))
    seen.error(lambda: open_store(f"{s3_url}&aws_secret_access_key={secret}"))
    seen.cli(capsys, ["info", f"s3://{access}:{secret}@bucket/p"])
    seen.error(lambda: connect(tmp_path / "bad.db", f"s3://{access}:{secret}@bucket/p", wait=0))
    with monkeypatch.context() as env:
        env.setenv("AWS_SECRET_ACCESS_KEY", secret + "-but-wrong")
        seen.error(lambda: list(open_store(s3_url).list("")))
        seen.cli(capsys, ["ls", s3_url])
        seen.error(lambda: connect(tmp_path / "refused.db", s3_url, wait=0))
        seen.error(lambda: Hydrator(s3_url, tmp_path / "refused-hydrated.db").run())

    logs = log_texts(caplog)
    tally.add(tally.HOSTILE, len(seen.texts))
    assert len(logs) > 50, "DEBUG logging captured next to nothing: the test would prove nothing"
    assert any(name.startswith("botocore") for name, _ in logs), "boto's DEBUG output was not captured"
    errors = [t for t in seen.texts if "Error" in t]
    assert len(errors) >= 8, f"the tour met too few errors: {len(errors)}"
    for name, text in logs:
        assert secret not in text, f"the secret key in a log record of {name}: {text[:300]}"
        if name.split(".")[0] in OUR_LOGGERS:
            assert access not in text, f"the access key ID in a log record of {name}: {text[:300]}"
    for text in seen.texts:
        assert secret not in text and (secret + "-but-wrong") not in text, f"the secret key in: {text[:600]}"
        assert access not in text, f"the access key ID in: {text[:600]}"


def test_errors_from_the_store_never_carry_the_secret_even_if_the_server_echoes_it(
        s3_server: S3Server, s3_url: str, tmp_path: Path) -> None:
    """A server (or proxy) that puts the credentials into its error message: the store blanks them."""
    from tests.s3proxy import Fault

    def echo(method: str, path: str, index: int) -> Fault:
        return Fault.status(400, f"Bad{s3_server.secret_key}And{s3_server.access_key}")

    with S3Proxy(s3_server.endpoint, echo) as proxy:
        store = open_store(s3_url.replace(s3_server.endpoint, proxy.url))
        try:
            with pytest.raises(StoreError) as caught:
                store.get("0000/x.ltx")
        finally:
            store.close()
    text = "".join(traceback.format_exception(caught.value))
    tally.add(tally.HOSTILE)
    assert s3_server.secret_key not in str(caught.value) and s3_server.access_key not in str(caught.value), text
    assert isinstance(caught.value, StoreError) and not isinstance(caught.value, apsw.Error)
