"""ltxctl errors: one readable line on stderr, a non-zero exit, never a traceback.

The cases that involve the store (no replica, missing bucket, wrong credentials, gap, corrupt
file, unknown scheme) run `ltxctl` as a real process; option errors go through `main()`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ltx.cli import main
from ltx.replica import Replica
from tests.interrupt import interrupt_first_request
from tests.ltx.history import History, record_history
from tests.s3server import S3Server

LTXCTL = [sys.executable, "-m", "ltx.cli"]
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def run_ltxctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LTXCTL, *args], capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT,
                          env=env if env is not None else dict(os.environ))


def assert_one_line_error(result: subprocess.CompletedProcess[str] | tuple[int, str], *needles: str) -> str:
    code, err = (result.returncode, result.stderr) if not isinstance(result, tuple) else result
    assert code != 0, err
    lines = err.splitlines()
    assert len(lines) == 1, f"stderr is not one line: {err!r}"
    assert lines[0].startswith("ltxctl: error: "), lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return record_history(tmp_path_factory.mktemp("h"), seed=3, transactions=10)


def test_url_with_no_replica(store_url: str, tmp_path: Path, s3_env: dict[str, str]) -> None:
    for args in (("restore", store_url, "-o", str(tmp_path / "out.db")), ("info", store_url), ("ls", store_url)):
        assert_one_line_error(run_ltxctl(*args, env=s3_env), "no LTX files found")
    assert not (tmp_path / "out.db").exists()


def test_missing_bucket(s3_server: S3Server, s3_env: dict[str, str], tmp_path: Path) -> None:
    url = s3_server.url("some/db", bucket="no-such-bucket-ltxctl")
    line = assert_one_line_error(run_ltxctl("restore", url, "-o", str(tmp_path / "o.db"), env=s3_env),
                                 "no-such-bucket-ltxctl")
    assert "bucket" in line.lower()


def test_wrong_credentials(s3_url: str, s3_env: dict[str, str], tmp_path: Path) -> None:
    env = {**s3_env, "AWS_SECRET_ACCESS_KEY": "wrong-secret-" + "x" * 20, "AWS_ACCESS_KEY_ID": "WRONGKEYID"}
    line = assert_one_line_error(run_ltxctl("ls", s3_url, env=env))
    assert "wrong-secret" not in line, "a secret leaked into the message"
    assert any(word in line.lower() for word in ("credential", "access", "denied", "signature", "forbidden"))
    # It names the replica as typed (without the query), not the level prefix its LIST used.
    typed = s3_url.split("?")[0]
    assert line.startswith(f"ltxctl: error: {typed}: "), line
    assert "/0000/" not in line and line.count(typed) == 1


def test_restore_into_a_directory_names_it(history: History, file_url: str, tmp_path: Path) -> None:
    history.ship(Replica.open(file_url), 1, 2)
    out = tmp_path / "outdir"
    out.mkdir()
    line = assert_one_line_error(run_ltxctl("restore", file_url, "-o", str(out), "--force"), str(out))
    assert ".tmp" not in line and "is a directory" in line
    (tmp_path / "ro").mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere: the unwritable case needs another user
        line = assert_one_line_error(run_ltxctl("restore", file_url, "-o", str(tmp_path / "ro" / "db")),
                                     str(tmp_path / "ro" / "db"))
        assert ".tmp" not in line


def test_gap_names_missing_range(history: History, file_url: str, tmp_path: Path) -> None:
    replica = Replica.open(file_url)
    history.ship(replica)
    for txid in (4, 5, 6):
        replica.store.delete(replica.key(0, txid, txid))
    assert_one_line_error(run_ltxctl("restore", file_url, "-o", str(tmp_path / "o.db")),
                          "gap", f"{4:016x}..{6:016x}")
    # Restoring before the gap still works.
    ok = run_ltxctl("restore", file_url, "-o", str(tmp_path / "o3.db"), "--txid", "3")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "o3.db").read_bytes() == history.images[3]


def test_corrupt_file_is_named(history: History, s3_url: str, s3_env: dict[str, str], tmp_path: Path) -> None:
    replica = Replica.open(s3_url)
    history.ship(replica)
    key = replica.key(0, 2, 2)
    data = bytearray(replica.store.get(key))
    data[120] ^= 0xFF  # inside the first page frame
    replica.store.put(key, bytes(data))
    line = assert_one_line_error(run_ltxctl("restore", s3_url, "-o", str(tmp_path / "o.db"), env=s3_env),
                                 "corrupt LTX file", key)
    assert "offset" in line
    assert not (tmp_path / "o.db").exists() and not (tmp_path / "o.db.tmp").exists()


def test_unknown_scheme(tmp_path: Path) -> None:
    assert_one_line_error(run_ltxctl("info", "ftp://example.com/db"), "unknown scheme", "ftp")
    # A relative path is the directory it names (here, one with no replica in it).
    assert_one_line_error(run_ltxctl("info", "relative/path"), f"file://{ROOT}/relative/path", "no LTX files")


def test_output_exists(history: History, file_url: str, tmp_path: Path) -> None:
    history.ship(Replica.open(file_url), 1, 2)
    out = tmp_path / "o.db"
    out.write_bytes(b"keep")
    assert_one_line_error(run_ltxctl("restore", file_url, "-o", str(out)), str(out), "--force")
    assert out.read_bytes() == b"keep"


@pytest.mark.parametrize("args, needle", [
    (["restore", "file:///x", "-o", "/tmp/x", "--txid", "zz"], "invalid TXID"),
    (["restore", "file:///x", "-o", "/tmp/x", "--txid", "1", "--timestamp", "2024-01-01T00:00:00Z"], "not both"),
    (["restore", "file:///x", "-o", "/tmp/x", "--timestamp", "yesterday"], "RFC 3339"),
    (["restore", "file:///x", "-o", "/tmp/x", "--timestamp", "2024-01-01T00:00:00"], "time zone"),
    (["compact", "file:///x", "--l0-retention", "5 minutes"], "invalid duration"),
    (["compact", "file:///x", "--level", "12"], "level"),
    (["restore", "file:///x"], "--output"),
    (["frobnicate"], "frobnicate"),
])
def test_option_errors(args: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(args)
    captured = capsys.readouterr()
    assert_one_line_error((code, captured.err), needle)
    assert code == 2, "a usage error exits 2, whether the parser or the command finds it"


def test_no_arguments_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "Usage: ltxctl" in err and "restore" in err and "verify" in err


@pytest.fixture
def saved_logging() -> Iterator[None]:
    """The root logger as it was before the test (-v and --log-level configure it in-process)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_version_and_verbose(history: History, file_url: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str], saved_logging: None) -> None:
    from ltx.clifmt import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ltxctl {version()}"
    assert main(["--log-level", "loud", "ls", file_url]) == 2
    assert "--log-level" in capsys.readouterr().err
    history.ship(Replica.open(file_url), 1, 2)
    out = tmp_path / "o.db"
    out.write_bytes(b"keep")
    assert main(["-v", "restore", file_url, "-o", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("ltxctl: error: ") and "--force" in err[0]
    assert main(["--log-level", "info", "restore", file_url, "-o", str(tmp_path / "new.db")]) == 0
    root = logging.getLogger()
    assert root.level == logging.INFO and any(getattr(h, "stream", None) is sys.stderr for h in root.handlers)
    logging.getLogger("ltx.test").info("a record")
    assert "INFO ltx.test: a record" in capsys.readouterr().err


def test_interrupt_prints_one_line_and_exits_130(tmp_path: Path) -> None:
    # A restore waiting on an S3 endpoint that accepts and never answers, interrupted (Ctrl-C).
    code, err = interrupt_first_request(
        lambda endpoint: [*LTXCTL, "restore", f"s3://bucket/db?endpoint={endpoint}&region=us-east-1", "-o",
                          str(tmp_path / "o.db"), "--no-progress"],
        ROOT, TIMEOUT)
    assert code == 130, err
    assert err.strip().splitlines() == ["ltxctl: error: interrupted"]
    assert not (tmp_path / "o.db").exists()
