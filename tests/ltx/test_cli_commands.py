"""ltxctl commands through `main()`: ls and info (text and --json), verify's exit status,
restore options (--txid, --timestamp, progress), compact's report."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ltx.cli import main
from ltx.compaction import compact_level, snapshot
from ltx.importer import import_database
from ltx.replica import Replica
from tests.ltx.history import History, record_history
from tests.ltx.test_hint import build_db


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return record_history(tmp_path_factory.mktemp("h"), seed=13, transactions=12)


@pytest.fixture
def replica_url(history: History, file_url: str) -> str:
    replica = Replica.open(file_url)
    history.ship(replica, 1, 8)
    compact_level(replica, 1)
    snapshot(replica)
    history.ship(replica, 9, history.last_txid)
    return file_url


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ls_json_and_text(replica_url: str, history: History, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ls", replica_url, "--json")
    assert code == 0
    files = json.loads(out)
    listed = Replica.open(replica_url).list_levels()
    assert [(f["level"], f["min_txid"], f["max_txid"], f["size"]) for f in files] == [
        (lvl, f"{f.min_txid:016x}", f"{f.max_txid:016x}", f.size) for lvl in sorted(listed) for f in listed[lvl]]
    code, out, _ = run(capsys, "ls", replica_url, "--level", "9", "--json")
    assert [(f["level"], f["min_txid"], f["max_txid"]) for f in json.loads(out)] == [(9, f"{1:016x}", f"{8:016x}")]
    code, out, _ = run(capsys, "ls", replica_url, "--level", "3")
    assert code == 0 and len(out.splitlines()) == 1, "an empty level of a non-empty replica is just empty"
    code, out, _ = run(capsys, "ls", replica_url)
    assert f"{history.last_txid:016x}" in out and len(out.splitlines()) == len(files) + 1
    assert all(f["sums_key"] is None for f in files) and not any(line.endswith(" yes") for line in out.splitlines())


def test_ls_shows_page_checksum_sidecars(file_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import_database(build_db(tmp_path / "source.db", rows=3000), Replica.open(file_url))
    code, out, _ = run(capsys, "ls", file_url, "--json")
    files = json.loads(out)
    assert code == 0 and files and all(f["sums_key"] == f["key"] + ".sum" for f in files), files
    code, out, _ = run(capsys, "ls", file_url)
    assert [line.split()[-1] for line in out.splitlines()] == ["sums"] + ["yes"] * len(files)


def test_info(replica_url: str, history: History, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "info", replica_url, "--json")
    assert code == 0
    info = json.loads(out)
    assert info["txid"] == f"{history.last_txid:016x}"
    assert info["page_size"] == history.page_size
    assert info["database_size"] == len(history.images[-1])
    assert info["newest_snapshot"]["max_txid"] == f"{8:016x}"
    assert [(f["level"], f["min_txid"]) for f in info["restore_plan"]] == (
        [(9, f"{1:016x}")] + [(0, f"{t:016x}") for t in range(9, history.last_txid + 1)])
    assert {lvl["level"]: lvl["files"] for lvl in info["levels"]} == {0: history.last_txid, 1: 1, 9: 1}
    code, out, _ = run(capsys, "info", replica_url)
    assert f"txid:            {history.last_txid:016x}" in out


def test_verify_exit_status(replica_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "verify", replica_url)
    assert (code, out) == (0, "") and err.startswith("ok: ")
    replica = Replica.open(replica_url)
    victim = replica.list_level(0)[3]
    data = bytearray(replica.store.get(victim.key))
    data[-20] ^= 1
    replica.store.put(victim.key, bytes(data))
    code, out, err = run(capsys, "verify", replica_url)
    assert code == 1
    assert out.splitlines() and all(line.startswith(replica.url) for line in out.splitlines())
    assert victim.key in out and "1 problem found" in err


def test_restore_options(replica_url: str, history: History, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "db"
    code, stdout, err = run(capsys, "restore", replica_url, "-o", str(out), "--txid", "5", "--progress")
    assert code == 0, err
    assert out.read_bytes() == history.images[5]
    assert "restoring" in err, "the progress bar goes to stderr"
    assert f"at TXID {5:016x}" in stdout
    stamp = history.time(10, plus_ms=1).isoformat().replace("+00:00", "Z")
    code, _, err = run(capsys, "restore", replica_url, "-o", str(out), "--timestamp", stamp, "--force",
                       "--no-progress", "--parallelism", "2")
    assert code == 0 and err == ""
    assert out.read_bytes() == history.images[10]
    code, stdout, _ = run(capsys, "restore", replica_url, "-o", str(out), "--force", "--integrity-check", "full")
    assert code == 0 and stdout.rstrip().endswith("integrity check (full): ok")
    code, stdout, _ = run(capsys, "restore", replica_url, "-o", str(out), "--force", "--integrity-check", "quick",
                          "--json")
    assert code == 0 and json.loads(stdout)["integrity_check"] == "quick"


def test_restore_takes_a_relative_time(replica_url: str, history: History, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    # The forms the VFS's timestamp= and blockmap --at take (the history is years old).
    out = tmp_path / "db"
    code, stdout, err = run(capsys, "restore", replica_url, "-o", str(out), "--timestamp", "5 minutes ago")
    assert code == 0, err
    assert out.read_bytes() == history.images[-1]
    code, _, err = run(capsys, "restore", replica_url, "-o", str(out), "--timestamp", "yesterday", "--force")
    assert code == 2 and "yesterday" in err


def test_restore_like_a_container_entrypoint(replica_url: str, history: History, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # `litestream restore -if-db-not-exists -if-replica-exists` habits, single dash and double.
    out = tmp_path / "db"
    empty = f"file://{tmp_path / 'nothing-here'}"
    code, stdout, err = run(capsys, "restore", empty, "-o", str(out), "-if-replica-exists")
    assert (code, err) == (0, "") and "nothing restored" in stdout and not out.exists()
    code, _, err = run(capsys, "restore", empty, "-o", str(out))
    assert code == 1 and "no LTX files" in err, "without the flag a missing replica is an error"
    code, stdout, err = run(capsys, "restore", replica_url, "-o", str(out), "-if-db-not-exists",
                            "-if-replica-exists", "--json")
    assert code == 0, err
    record = json.loads(stdout)
    assert record["restored"] is True and record["txid"] == f"{history.last_txid:016x}"
    assert (record["path"], record["pages"] * record["page_size"]) == (str(out), len(history.images[-1]))
    assert out.read_bytes() == history.images[-1]
    out.write_bytes(b"the application's own database")
    code, stdout, err = run(capsys, "restore", replica_url, "-o", str(out), "--if-db-not-exists")
    assert (code, err) == (0, "") and "already exists" in stdout
    assert out.read_bytes() == b"the application's own database"
    code, stdout, _ = run(capsys, "restore", replica_url, "-o", str(out), "-if-db-not-exists", "--json")
    assert code == 0
    assert json.loads(stdout) == {"restored": False, "path": str(out), "reason": "database already exists"}
    code, stdout, _ = run(capsys, "restore", empty, "-o", str(tmp_path / "x"), "-if-replica-exists", "--json")
    assert code == 0 and json.loads(stdout)["reason"] == "no replica"


def test_compact_report(replica_url: str, history: History, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "compact", replica_url, "--level", "1", "--no-retention")
    assert code == 0, err
    assert f"level 1: wrote ltx/1/{9:016x}-{history.last_txid:016x}.ltx from {history.last_txid - 8} files" in out
    code, out, err = run(capsys, "compact", replica_url, "--l0-retention", "1h", "--snapshot-retention", "48h")
    assert code == 0, err
    lines = out.splitlines()
    assert any(line.startswith("level 9: wrote") for line in lines)
    assert any(line.startswith("level 2: wrote") for line in lines)
    # History timestamps are from 2023, so everything is old: level 0 keeps only its newest file,
    # and the older snapshot goes.
    assert f"deleted ltx/9/{1:016x}-{8:016x}.ltx" in lines
    assert lines[-1] == f"retention: {history.last_txid - 1 + 1} files deleted"
    assert [f.max_txid for f in Replica.open(replica_url).list_level(0)] == [history.last_txid]
    code, out, err = run(capsys, "restore", replica_url, "-o", str(tmp_path / "after.db"))
    assert code == 0, err
    assert (tmp_path / "after.db").read_bytes() == history.images[-1]


def test_plugins_add_commands_and_a_broken_one_is_skipped(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Other packages add commands through the `ltxctl.commands` entry points (the hydrator adds
    `hydrate`), so that `ltx` never imports them."""
    import typer

    import ltx.cli

    def register(app: typer.Typer) -> None:
        @app.command("plugin-test-hello")
        def hello(name: str) -> None:
            typer.echo(f"hello {name}")

    class EntryPoint:
        def __init__(self, name: str, target: object) -> None:
            self.name, self.target = name, target

        def load(self) -> object:
            if isinstance(self.target, Exception):
                raise self.target
            return self.target

    def entry_points(group: str) -> list[EntryPoint]:
        assert group == ltx.cli.PLUGIN_GROUP
        return [EntryPoint("broken", ImportError("no module named nowhere")), EntryPoint("hello", register)]

    monkeypatch.setattr("importlib.metadata.entry_points", entry_points)
    monkeypatch.setattr(ltx.cli, "_plugins_loaded", False)
    code, out, err = run(capsys, "plugin-test-hello", "world")
    assert (code, out) == (0, "hello world\n")
    assert err.count("\n") == 1 and "command 'broken' unavailable" in err


def test_a_relative_path_is_the_replica_it_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # apsw.Connection("x.db", vfs="ltxvfs") writes its default replica to ./x.db-ltx; every
    # command takes that name as typed.
    import apsw

    import vfs

    monkeypatch.chdir(tmp_path)
    conn = apsw.Connection("x.db", vfs=vfs.VFS_NAME)
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES (42)")
    conn.close()
    assert (tmp_path / "x.db-ltx" / "ltx" / "0").is_dir()
    code, out, err = run(capsys, "ls", "x.db-ltx", "--json")
    assert code == 0, err
    files = json.loads(out)
    assert files and {f["level"] for f in files} == {0}
    code, out, err = run(capsys, "info", "./x.db-ltx", "--json")
    assert code == 0 and json.loads(out)["txid"] == files[-1]["max_txid"], err
    assert run(capsys, "verify", "x.db-ltx")[0] == 0
    code, _, err = run(capsys, "restore", "x.db-ltx", "-o", "out.db")
    assert code == 0, err
    assert apsw.Connection("out.db").execute("SELECT x FROM t").fetchall() == [(42,)]
    code, _, err = run(capsys, "import", "out.db", "copy-ltx")
    assert code == 0, err
    assert Replica.open(str(tmp_path / "copy-ltx")).list_level(9), "import wrote a snapshot where the name says"


def test_json_reports_of_verify_import_and_compact(history: History, file_url: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    db = build_db(tmp_path / "source.db", rows=3000)
    code, out, err = run(capsys, "import", str(db), file_url, "--json", "--progress")
    assert code == 0, err
    record = json.loads(out)
    assert record["txid"] == f"{1:016x}" and len(record["keys"]) == 2 and record["replaced"] == 0
    assert "uploading" in err, "the upload's progress bar goes to stderr"
    code, out, _ = run(capsys, "verify", file_url, "--json")
    verified = json.loads(out)
    assert code == 0 and verified["ok"] is True and verified["files"] == 2 and verified["problems"] == []
    code, out, _ = run(capsys, "compact", file_url, "--json", "--no-retention")
    steps = json.loads(out)["steps"]
    assert code == 0 and {s["level"] for s in steps} >= {9}
    path = Path(file_url.removeprefix("file://")) / record["keys"][0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", file_url, "--json")
    verified = json.loads(out)
    assert code == 1 and verified["ok"] is False and verified["problems"][0]["key"] == record["keys"][0]


def test_counts_and_sizes_read_naturally(file_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "import", str(build_db(tmp_path / "s.db", rows=10)), file_url)[0] == 0
    code, out, _ = run(capsys, "info", file_url)
    assert code == 0 and "restore plan:    1 file, " in out and "1 files" not in out
    assert re.search(r"^  0: +1 file +\d+ B  TXIDs", out, re.MULTILINE), out
    code, out, _ = run(capsys, "ls", file_url)
    assert re.search(r"0000000000000001 +\d+ B  ", out), "sizes in binary units, as everywhere"


def test_info_shows_the_newest_commits_age(replica_url: str, history: History,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "info", replica_url, "--json")
    record = json.loads(out)
    expected = (datetime.now(UTC) - history.time(history.last_txid)).total_seconds()
    assert code == 0 and abs(record["age_seconds"] - expected) < 60
    code, out, _ = run(capsys, "info", replica_url)
    assert re.search(r"^updated: +\S+Z \(\d+d\d\dh ago\)$", out, re.MULTILINE), out
    code, out, _ = run(capsys, "info", replica_url, "--watch", "--interval", "10ms", "--count", "2", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["txid"] for r in lines] == [f"{history.last_txid:016x}"] * 2


def test_info_watch_follows_new_commits(history: History, file_url: str) -> None:
    # A running `ltxctl info --watch` sees a TXID shipped while it runs, then stops on Ctrl-C.
    import signal
    import subprocess
    import sys

    replica = Replica.open(file_url)
    history.ship(replica, 1, 3)
    proc = subprocess.Popen([sys.executable, "-m", "ltx.cli", "info", file_url, "--watch", "--interval", "50ms"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"txid {3:016x}" in first, first
        history.ship(replica, 4, 4)
        seen = [proc.stdout.readline() for _ in range(200)]  # 10 s of lines at most
        assert any(f"txid {4:016x}" in line for line in seen)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and err.strip() == "ltxctl: error: interrupted"
