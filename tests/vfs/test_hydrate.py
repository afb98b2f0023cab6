"""ltxvfs with hydrate=PATH: reads move from the store to the hydrated local copy once it is
complete and at the connection's TXID, never mixing TXIDs; progress and stats report it; the
writer's own commits reach the copy through `Hydration.on_commit`."""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import apsw
import pytest

from hydrator.hydrator import Hydrator
from ltx.names import format_filename
from ltx.replica import Replica
from tests.litestream import wait_for
from tests.s3proxy import Fault, S3Proxy
from tests.s3server import S3Server
from tests.vfs.replicas import History, big_value, plain, pragma, stats
from tests.vfs.replicas import connect as connect_vfs
from tests.vfs.writing import open_writer
from tests.vfs.writing import txid as writer_txid
from vfs import hydrate
from vfs.hydrate import HydratePathError, SharedHydration, attach, shared_hydration
from vfs.options import ENV_HYDRATE_PATH

#: Upper bound for anything a test waits for (polled, never slept).
DEADLINE = 30.0
ROWS = 1500
#: Level-0 files after the level-9 snapshot in the shared history.
INCREMENTS = 40
#: A page cache of a few pages, so queries miss it and read the store or the local copy.
SMALL_CACHE = 4 * 4096
QUERIES = (
    "SELECT count(*), sum(length(v)), min(id), max(id) FROM t",
    "SELECT id, v FROM t WHERE id IN (0, 7, 499, 500, 1001, 1499) ORDER BY id",
    "SELECT id, substr(v, 1, 24) FROM t ORDER BY id",
    "PRAGMA integrity_check",
)


def updates_history(workdir: Path, rows: int = ROWS, increments: int = INCREMENTS, seed: int = 61) -> History:
    """TXID 1: a table `t(id, v)` of `rows` poorly compressible rows; each later TXID updates three."""
    path = workdir / "updates.db"
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA page_size = 4096").fetchall()
    conn.execute("PRAGMA journal_mode = delete").fetchall()
    with conn:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, big_value(i)) for i in range(rows)])
    images = [b"", path.read_bytes()]
    rng = random.Random(seed)
    for txid in range(2, increments + 2):
        with conn:
            for _ in range(3):
                i = rng.randrange(rows)
                conn.execute("UPDATE t SET v = ? WHERE id = ?", (f"txid {txid} {big_value(i + txid)}", i))
        images.append(path.read_bytes())
    conn.close()
    return History(4096, images)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return updates_history(tmp_path_factory.mktemp("hydrate-history"))


def ship(history: History, replica: Replica, last: int, first: int = 1) -> None:
    """TXID 1 as a level-9 snapshot, later TXIDs (up to `last`) as level-0 files."""
    if first <= 1:
        history.ship_range(replica, 1, 1, level=9)
    history.ship(replica, max(first, 2), last)


def expected(history: History, txid: int, tmp_path: Path) -> list[list[tuple[Any, ...]]]:
    conn = plain(history.write_image(txid, tmp_path / f"expected-{txid}.db"))
    try:
        return results(conn)
    finally:
        conn.close()


def connect(path: Path, replica: str, **params: Any) -> apsw.Connection:
    """An ltxvfs connection whose SQLite page cache holds only a few pages, so every query reads
    through the VFS (and a test sees where the pages came from)."""
    conn = connect_vfs(path, replica, **params)
    conn.execute("PRAGMA cache_size = 10").fetchall()
    return conn


def results(conn: apsw.Connection) -> list[list[tuple[Any, ...]]]:
    return [[tuple(r) for r in conn.execute(q)] for q in QUERIES]


def progress(conn: apsw.Connection) -> str:
    return str(pragma(conn, "litestream_hydration_progress"))


def wait_complete(conn: apsw.Connection) -> None:
    wait_for(lambda: progress(conn) == "100.0", "hydration to complete", DEADLINE,
             on_timeout=lambda: str(stats(conn)))


def hydrated(path: Path) -> SharedHydration:
    shared = shared_hydration(path)
    assert shared is not None, f"no hydration of {path} runs"
    return shared


@pytest.fixture
def proxied(request: pytest.FixtureRequest) -> Iterator[tuple[str, S3Proxy | None]]:
    """(replica URL, proxy): an S3 URL through a counting proxy, or a file:// URL and None."""
    if request.param == "file":
        yield str(request.getfixturevalue("file_url")), None
        return
    server: S3Server = request.getfixturevalue("s3_server")
    url: str = request.getfixturevalue("s3_url")
    with S3Proxy(server.endpoint) as proxy:
        yield url.replace(server.endpoint, proxy.url), proxy


def requests_made(conn: apsw.Connection, proxy: S3Proxy | None) -> tuple[int, int]:
    """(GETs, LISTs) made so far for this connection and its hydration, as the store sees them."""
    if proxy is not None:
        counts = proxy.counts()
        return counts.get("GET", 0), counts.get("LIST", 0)
    s = stats(conn)
    return s["gets"] + s["hydration_gets"], s["lists"] + s["hydration_lists"]


@pytest.mark.parametrize("proxied", ["file", "s3"], indirect=True)
def test_complete_copy_answers_alone_and_equals_the_source(history: History, proxied: tuple[str, S3Proxy | None],
                                                           tmp_path: Path) -> None:
    url, proxy = proxied
    last = 9
    replica = Replica.open(url)
    ship(history, replica, last)
    replica.close()
    copy = tmp_path / "local" / "copy.db"
    conn = connect(tmp_path / "x.db", url, hydrate=str(copy), poll=0, cache_size=SMALL_CACHE)
    try:
        want = expected(history, last, tmp_path)
        wait_complete(conn)
        assert copy.read_bytes() == history.images[last]
        before = stats(conn)
        if proxy is not None:  # the requests the store saw are the connection's plus the hydration's
            counts = proxy.counts()
            assert counts["GET"] == before["gets"] + before["hydration_gets"], (counts, before)
            assert counts["LIST"] == before["lists"] + before["hydration_lists"], (counts, before)
        made = requests_made(conn, proxy)
        assert results(conn) == want
        after = stats(conn)
        assert requests_made(conn, proxy) == made, "a query on the complete copy made requests"
        assert after["local_reads"] - before["local_reads"] > 50, after
        assert after["cache_misses"] == before["cache_misses"], "every miss of the page cache went to the copy"
        assert after["hydration_complete"] is True and after["hydration_txid"] == f"{last:016x}"
        assert after["hydration_error"] is None
    finally:
        conn.close()


def test_reader_answers_while_hydration_runs(history: History, s3_server: S3Server, s3_url: str,
                                             tmp_path: Path) -> None:
    """Every GET of a level-0 file waits a while at the proxy, so hydration (which fetches all
    40 of them) takes seconds; point queries (pages of the level-9 snapshot) answer meanwhile."""

    def slow_level0(method: str, path: str, index: int) -> Fault:
        return Fault.stall(0.25) if method == "GET" and "/0000/" in path else Fault.forward()

    replica = Replica.open(s3_url)
    ship(history, replica, history.last_txid)
    replica.close()
    copy = tmp_path / "copy.db"
    with S3Proxy(s3_server.endpoint, plan=slow_level0) as proxy:
        url = s3_url.replace(s3_server.endpoint, proxy.url)
        conn = connect(tmp_path / "x.db", url, hydrate=str(copy), poll=0, cache_size=SMALL_CACHE)
        source = plain(history.write_image(history.last_txid, tmp_path / "source.db"))
        try:
            seen: list[float] = []
            answered_during = 0
            for n in range(100_000):
                seen.append(float(progress(conn)))
                if seen[-1] == 100.0:
                    break
                q = f"SELECT v FROM t WHERE id = {(n * 37) % ROWS}"
                assert conn.execute(q).fetchall() == source.execute(q).fetchall()
                if not stats(conn)["hydration_complete"]:
                    answered_during += 1
            assert answered_during >= 1, "no query was answered while hydration ran"
            assert seen == sorted(seen), f"progress went down: {seen}"
            assert seen[0] < 100.0 and seen[-1] == 100.0
            assert any(0.0 < p < 100.0 for p in seen), "progress never showed a partial value"
            proxy.reset()
            assert results(conn) == expected(history, history.last_txid, tmp_path)
            assert proxy.counts().get("requests", 0) == 0, proxy.counts()
            assert stats(conn)["local_reads"] > 0
        finally:
            conn.close()
            source.close()


@pytest.mark.parametrize("proxied", ["file", "s3"], indirect=True)
def test_follow_brings_new_commits_to_the_view_and_the_copy(history: History, proxied: tuple[str, S3Proxy | None],
                                                            tmp_path: Path) -> None:
    url, proxy = proxied
    first, last = 5, 12
    replica = Replica.open(url)
    ship(history, replica, first)
    copy = tmp_path / "copy.db"
    conn = connect(tmp_path / "x.db", url, hydrate=str(copy), poll=0.05, cache_size=SMALL_CACHE)
    try:
        wait_complete(conn)
        assert results(conn) == expected(history, first, tmp_path)
        ship(history, replica, last, first=first + 1)
        wait_for(lambda: pragma(conn, "litestream_txid") == f"{last:016x}", "the view to follow", DEADLINE)
        shared = hydrated(copy)
        assert shared.hydrator.wait_txid(last, DEADLINE), "the copy did not follow"
        with shared.hydrator.reading():
            assert copy.read_bytes() == history.images[last]
        before = stats(conn)
        gets = requests_made(conn, proxy)[0]
        assert results(conn) == expected(history, last, tmp_path)
        after = stats(conn)
        assert after["local_reads"] > before["local_reads"], "the followed copy was not read"
        assert requests_made(conn, proxy)[0] == gets, "a query at the followed TXID fetched pages"
    finally:
        conn.close()
        replica.close()


def test_read_transaction_keeps_its_txid_while_an_apply_waits(history: History, file_url: str,
                                                              tmp_path: Path) -> None:
    """A transaction on the copy holds its lease: the next file waits, the transaction keeps reading
    its own TXID from the copy, and the file lands (and is read) after COMMIT."""
    replica = Replica.open(file_url)
    ship(history, replica, 6)
    copy = tmp_path / "copy.db"
    conn = connect(tmp_path / "x.db", file_url, hydrate=str(copy), poll=0.05, cache_size=SMALL_CACHE)
    try:
        wait_complete(conn)
        want6, want7 = expected(history, 6, tmp_path), expected(history, 7, tmp_path)
        assert want6 != want7
        h = hydrated(copy).hydrator
        conn.execute("BEGIN")
        assert results(conn) == want6
        reads = stats(conn)["local_reads"]
        ship(history, replica, 7, first=7)
        wait_for(lambda: h._lock._writers_waiting == 1, "the hydrator to wait for the reader", DEADLINE)
        assert h.txid == 6
        assert results(conn) == want6
        assert pragma(conn, "litestream_txid") == f"{6:016x}"
        assert stats(conn)["local_reads"] > reads, "the open transaction left the copy"
        conn.execute("COMMIT")
        assert h.wait_txid(7, DEADLINE)
        wait_for(lambda: pragma(conn, "litestream_txid") == f"{7:016x}", "the view to follow", DEADLINE)
        reads = stats(conn)["local_reads"]
        assert results(conn) == want7
        assert stats(conn)["local_reads"] > reads
    finally:
        conn.close()
        replica.close()


def test_view_and_copy_at_different_txids_never_mix(history: History, file_url: str, tmp_path: Path) -> None:
    """Two connections share one copy: one follows (the copy follows with it), one stays at its
    open TXID (poll=0) and one reads the past (txid=). Only the one at the copy's TXID reads it."""
    replica = Replica.open(file_url)
    ship(history, replica, 8)
    copy = tmp_path / "copy.db"
    follows = connect(tmp_path / "x.db", file_url, hydrate=str(copy), poll=0.05, cache_size=SMALL_CACHE)
    stays = connect(tmp_path / "x.db", file_url, hydrate=str(copy), poll=0, cache_size=SMALL_CACHE)
    past = connect(tmp_path / "x.db", file_url, hydrate=str(copy), txid="3", cache_size=SMALL_CACHE)
    try:
        wait_complete(follows)
        assert results(stays) == expected(history, 8, tmp_path)
        assert stats(stays)["local_reads"] > 0, "at the copy's TXID the copy is read"
        ship(history, replica, 10, first=9)
        assert hydrated(copy).hydrator.wait_txid(10, DEADLINE)
        wait_for(lambda: pragma(follows, "litestream_txid") == f"{10:016x}", "the view to follow", DEADLINE)
        reads = stats(stays)["local_reads"]
        assert results(stays) == expected(history, 8, tmp_path), "the copy moved ahead; TXID 8 must still read"
        assert stats(stays)["local_reads"] == reads, "read pages of TXID 10 for a view at 8"
        assert results(past) == expected(history, 3, tmp_path)
        assert stats(past)["local_reads"] == 0
        assert results(follows) == expected(history, 10, tmp_path)
        assert stats(follows)["local_reads"] > 0
    finally:
        for c in (follows, stays, past):
            c.close()
        replica.close()
    assert shared_hydration(copy) is None, "the last connection to close stops the hydration"


def test_copy_ahead_of_the_view_makes_the_follower_look_now(history: History, file_url: str,
                                                             tmp_path: Path) -> None:
    """A connection polling once a minute shares a copy that follows every 50 ms: when a
    transaction finds the copy ahead, its follower looks at once, and the next reads are local."""
    replica = Replica.open(file_url)
    ship(history, replica, 5)
    copy = tmp_path / "copy.db"
    fast = connect(tmp_path / "x.db", file_url, hydrate=str(copy), poll=0.05, cache_size=SMALL_CACHE)
    slow = connect(tmp_path / "x.db", file_url, hydrate=str(copy), poll=60, cache_size=SMALL_CACHE)
    try:
        wait_complete(fast)
        ship(history, replica, 6, first=6)
        assert hydrated(copy).hydrator.wait_txid(6, DEADLINE)
        with slow:  # one transaction: it began at TXID 5 and stays there, from the store
            assert results(slow) == expected(history, 5, tmp_path)
        wait_for(lambda: pragma(slow, "litestream_txid") == f"{6:016x}", "the slow follower to catch up", DEADLINE)
        reads = stats(slow)["local_reads"]
        assert results(slow) == expected(history, 6, tmp_path)
        s = stats(slow)
        assert s["local_reads"] > reads and s["hydration_nudges"] >= 1, s
    finally:
        fast.close()
        slow.close()
        replica.close()


def test_transaction_ended_on_another_thread_lets_the_copy_move_on(history: History, file_url: str,
                                                                  tmp_path: Path) -> None:
    replica = Replica.open(file_url)
    ship(history, replica, 4)
    copy = tmp_path / "copy.db"
    conn = connect(tmp_path / "x.db", file_url, hydrate=str(copy), poll=0.05, cache_size=SMALL_CACHE)
    try:
        wait_complete(conn)
        conn.execute("BEGIN")
        assert results(conn) == expected(history, 4, tmp_path)
        assert stats(conn)["local_transactions"] >= 1
        ender = threading.Thread(target=lambda: conn.execute("COMMIT"))
        ender.start()
        ender.join(DEADLINE)
        ship(history, replica, 5, first=5)
        assert hydrated(copy).hydrator.wait_txid(5, DEADLINE), "the lease of the ended transaction was kept"
    finally:
        conn.close()
        replica.close()


@pytest.mark.parametrize("given_as", ["bytes", "path", "file"])
def test_writers_commit_reaches_the_copy(history: History, file_url: str, tmp_path: Path, given_as: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`on_commit` (the write path's hook) applies a commit to the copy without fetching it: here
    the copy does not follow the replica, so only the hook can bring TXID 7."""
    monkeypatch.setattr(hydrate, "COPY_IN_MEMORY_LIMIT", 1000)  # a file object is spilled, not read whole
    replica = Replica.open(file_url)
    ship(history, replica, 6)
    copy = tmp_path / "copy.db"
    writer = attach(str(copy), str(tmp_path / "x.db"), file_url, replica.url, follow=False, poll_interval=0)
    try:
        conn = connect(tmp_path / "x.db", file_url, hydrate=str(copy), poll=0.05, cache_size=SMALL_CACHE)
        try:
            wait_complete(conn)
            shared = hydrated(copy)
            assert shared is writer.shared and not shared.follow
            ltx = history.encode(7)
            name = format_filename(7, 7)
            replica.put_file(0, 7, 7, ltx, timestamp_ms=history.timestamp_ms(7))
            gets = shared.store_stats()["gets"]
            if given_as == "path":
                spill = tmp_path / name
                spill.write_bytes(ltx)
                writer.on_commit(spill, name)
                spill.unlink()  # the hook opened it already
            elif given_as == "file":  # the write path's EncodedCommit.data for a large commit
                with tempfile.TemporaryFile() as f:
                    f.write(ltx)
                    writer.on_commit(f, name)  # copied: the writer closes its file right after
            else:
                writer.on_commit(ltx, name)
            wait_for(lambda: shared.commits_applied == 1, "the commit to reach the copy", DEADLINE)
            assert shared.hydrator.txid == 7
            assert shared.store_stats()["gets"] == gets, "the commit was fetched, not taken from the hook"
            assert copy.read_bytes() == history.images[7]
            wait_for(lambda: pragma(conn, "litestream_txid") == f"{7:016x}", "the view to follow", DEADLINE)
            reads = stats(conn)["local_reads"]
            assert results(conn) == expected(history, 7, tmp_path)
            s = stats(conn)
            assert s["local_reads"] > reads and s["hydration_commits_applied"] == 1, s
            assert s["hydration_commits_skipped"] == 0 and s["hydration_error"] is None, s
            writer.on_commit(ltx, name)  # already applied: skipped, nothing breaks
            wait_for(lambda: shared.commits_skipped == 1, "the repeated commit to be skipped", DEADLINE)
        finally:
            conn.close()
    finally:
        writer.close()


def test_a_writers_commits_reach_its_copy_through_the_hook(store_url: str, tmp_path: Path) -> None:
    """A real writer (poll=0, so the copy does not follow the replica) on a new replica: hydration
    starts once the first commit is there; every later commit reaches the copy through on_commit
    (the hydration fetches nothing more), and the writer's next read transactions read the copy."""
    copy = tmp_path / "copy.db"
    w = open_writer(tmp_path / "w.db", store_url, hydrate=str(copy), cache_size=SMALL_CACHE)
    try:
        shared = hydrated(copy)
        # The hydration runs in the background: let it find the replica empty before the first commit.
        wait_for(lambda: shared.restarts >= 1 or shared.hydrator.error is not None,
                 "the first hydration to find the replica empty", DEADLINE)
        with w:
            w.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
            w.executemany("INSERT INTO t VALUES (?, ?)", [(i, big_value(i)) for i in range(300)])
        wait_complete(w)
        assert shared.restarts >= 1, "the first hydration found an empty replica and was started again"
        fetched = shared.store_stats()["gets"]
        rng = random.Random(5)
        for n in range(6):
            with w:
                w.execute("UPDATE t SET v = ? WHERE id = ?", (f"update {n}", rng.randrange(300)))
                w.execute("INSERT INTO t VALUES (?, ?)", (1000 + n, big_value(1000 + n)))
        last = writer_txid(w)
        # The applier counts a commit just after the copy reached its TXID: wait for both.
        wait_for(lambda: shared.hydrator.txid == last and shared.commits_applied >= 6,
                 "the writer's commits to reach the copy", DEADLINE, on_timeout=lambda: str(stats(w)))
        assert shared.store_stats()["gets"] == fetched, stats(w)
        rows = w.execute("SELECT * FROM t ORDER BY id").fetchall()
        local = plain(copy)
        try:
            assert local.execute("SELECT * FROM t ORDER BY id").fetchall() == rows
            assert local.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            local.close()
        w.execute("PRAGMA cache_size = 10").fetchall()
        reads = stats(w)["local_reads"]
        assert w.execute("SELECT * FROM t ORDER BY id").fetchall() == rows
        assert stats(w)["local_reads"] > reads, ("the writer did not read its copy", stats(w))
    finally:
        w.close()


def test_progress_without_hydration_is_zero(history: History, file_url: str, tmp_path: Path) -> None:
    replica = Replica.open(file_url)
    ship(history, replica, 2)
    replica.close()
    conn = connect(tmp_path / "x.db", file_url, poll=0)
    try:
        assert progress(conn) == "0"
        assert "hydration_percent" not in stats(conn)
        with pytest.raises(apsw.SQLError, match="read-only"):
            conn.execute("PRAGMA litestream_hydration_progress = 50").fetchall()
    finally:
        conn.close()


def test_environment_names_the_copy(history: History, file_url: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    replica = Replica.open(file_url)
    ship(history, replica, 3)
    replica.close()
    copy = tmp_path / "env" / "copy.db"
    monkeypatch.setenv(ENV_HYDRATE_PATH, str(copy))
    conn = connect(tmp_path / "x.db", file_url, poll=0, cache_size=SMALL_CACHE)
    try:
        wait_complete(conn)
        assert stats(conn)["hydration_path"] == str(copy)
        assert results(conn) == expected(history, 3, tmp_path)
        assert stats(conn)["local_reads"] > 0
    finally:
        conn.close()
    assert copy.read_bytes() == history.images[3]


def test_bad_hydrate_paths_are_refused(history: History, file_url: str, tmp_path: Path) -> None:
    replica = Replica.open(file_url)
    ship(history, replica, 2)
    replica.close()
    name = tmp_path / "x.db"
    with pytest.raises(apsw.CantOpenError, match="database's own name"):
        connect(name, file_url, hydrate=str(name))
    (tmp_path / "dir").mkdir()
    with pytest.raises(HydratePathError, match="is a directory"):
        connect(name, file_url, hydrate=str(tmp_path / "dir"))
    precious = tmp_path / "precious.db"
    precious.write_bytes(b"somebody's data")
    with pytest.raises(HydratePathError, match="not a hydrated copy"):
        connect(name, file_url, hydrate=str(precious))
    assert precious.read_bytes() == b"somebody's data"
    copy = tmp_path / "copy.db"
    conn = connect(name, file_url, hydrate=str(copy), poll=0)
    other = f"file://{tmp_path / 'other-replica'}"
    other_replica = Replica.open(other)
    ship(history, other_replica, 2)
    other_replica.close()
    try:
        with pytest.raises(HydratePathError, match="another connection"):
            connect(tmp_path / "y.db", other, hydrate=str(copy), wait=0)
    finally:
        conn.close()


def test_another_process_hydrating_the_path_is_refused(history: History, file_url: str, tmp_path: Path) -> None:
    """Two processes must never write one copy: the advisory lock beside it says who does."""
    replica = Replica.open(file_url)
    ship(history, replica, 2)
    replica.close()
    copy = tmp_path / "copy.db"
    held = os.open(hydrate.lock_path(str(copy)), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what another process's ltxvfs holds
        with pytest.raises(HydratePathError, match="another process"):
            connect(tmp_path / "x.db", file_url, hydrate=str(copy), poll=0)
    finally:
        os.close(held)
    conn = connect(tmp_path / "x.db", file_url, hydrate=str(copy), poll=0)
    try:
        wait_complete(conn)
    finally:
        conn.close()


def test_reopening_resumes_the_copy_without_fetching_it_again(history: History, file_url: str,
                                                              tmp_path: Path) -> None:
    """Close the last connection and open again at once (the old hydrator stops first): the
    record beside the copy lets the new one resume; only files past it are fetched."""
    replica = Replica.open(file_url)
    ship(history, replica, 6)
    copy = tmp_path / "copy.db"
    conn = connect(tmp_path / "x.db", file_url, hydrate=str(copy), poll=0)
    wait_complete(conn)
    first = stats(conn)["hydration_bytes"]
    conn.close()
    ship(history, replica, 8, first=7)
    for n in range(3):
        conn = connect(tmp_path / "x.db", file_url, hydrate=str(copy), poll=0, cache_size=SMALL_CACHE)
        try:
            wait_complete(conn)
            # A resumed copy is complete (readable) at its recorded TXID 6 while it applies 7 and 8.
            assert hydrated(copy).hydrator.wait_txid(8, DEADLINE), stats(conn)
            s = stats(conn)
            assert s["hydration_txid"] == f"{8:016x}" and s["hydration_start_overs"] == 0, s
            assert s["hydration_bytes"] < first / 10, (n, s["hydration_bytes"], first)
            assert results(conn) == expected(history, 8, tmp_path)
            assert stats(conn)["local_reads"] > 0
        finally:
            conn.close()
    assert copy.read_bytes() == history.images[8]
    replica.close()


def test_hydration_of_an_empty_replica_starts_once_it_has_data(history: History, file_url: str,
                                                               tmp_path: Path) -> None:
    """A hydration that finds nothing yet (a writer's brand-new replica) is started again."""
    copy = tmp_path / "copy.db"
    replica = Replica.open(file_url)
    handle = attach(str(copy), str(tmp_path / "x.db"), file_url, replica.url, follow=False, poll_interval=0)
    try:
        shared = handle.shared
        wait_for(lambda: shared.hydrator.error is not None, "the first hydration to fail", DEADLINE)
        ship(history, replica, 3)
        assert wait_for(lambda: shared.hydrator.is_complete, "hydration to start again", DEADLINE)
        assert shared.restarts >= 1 and shared.hydrator.txid == 3
        assert isinstance(shared.hydrator, Hydrator)
        assert copy.read_bytes() == history.images[3]
    finally:
        handle.close()
        replica.close()


def deferred_copy(history: History, file_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  quiet: float, max_defer: float) -> tuple[apsw.Connection, Path]:
    """A connection hydrating `copy.db` from a replica of the whole history, its hydration deferred
    until reads pause for `quiet` seconds, at most `max_defer` after the open."""
    monkeypatch.setattr(hydrate, "HYDRATE_QUIET", quiet)
    monkeypatch.setattr(hydrate, "HYDRATE_MAX_DEFER", max_defer)
    replica = Replica.open(file_url)
    ship(history, replica, history.last_txid)
    replica.close()
    copy = tmp_path / "copy.db"
    conn = connect(tmp_path / "x.db", file_url, hydrate=str(copy), poll=0, cache_size=SMALL_CACHE)
    return conn, copy


def test_hydration_starts_once_reads_from_the_store_pause(history: History, file_url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold open's first reads have the store to themselves: hydration makes no request while
    the connection keeps reading from the store, starts once its reads pause, and completes."""
    conn, copy = deferred_copy(history, file_url, tmp_path, monkeypatch, 2.0, 600.0)
    source = plain(history.write_image(history.last_txid, tmp_path / "source.db"))
    try:
        for n in range(40):
            q = f"SELECT v FROM t WHERE id = {(n * 37) % ROWS}"
            assert conn.execute(q).fetchall() == source.execute(q).fetchall()
        s = stats(conn)
        assert s["cache_misses"] >= 20, s  # the reads went to the store
        assert (s["hydration_gets"], s["hydration_lists"], s["hydration_complete"]) == (0, 0, False), s
        assert not hydrated(copy).hydrator.running
        assert hydrated(copy).hydrator.wait_complete(DEADLINE)  # not through the pragma: it starts it
        assert hydrated(copy).deferred >= 2.0
        assert results(conn) == expected(history, history.last_txid, tmp_path)
        assert stats(conn)["local_reads"] > 0
    finally:
        conn.close()
        source.close()


def test_hydration_waits_at_most_the_longest_deferral(history: History, file_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    conn, copy = deferred_copy(history, file_url, tmp_path, monkeypatch, 600.0, 0.2)
    try:
        assert hydrated(copy).hydrator.wait_complete(DEADLINE)
        assert 0.2 <= hydrated(copy).deferred < 600.0
    finally:
        conn.close()


def listed_prefix(path: str) -> str:
    """The prefix a LIST request asked for."""
    return parse_qs(urlsplit(path).query).get("prefix", [""])[0]


@pytest.mark.parametrize("proxied", ["s3"], indirect=True)
def test_a_writers_copy_follows_on_demand_only(proxied: tuple[str, S3Proxy | None], tmp_path: Path) -> None:
    """A writer's copy does not poll the replica on a timer (its commits reach it through the
    applier): while the writer's follower polls every 50 ms, the store sees only the follower's
    level-0 LISTs. Another writer's commit, which no applier brings, wakes the hydrator at the
    next transaction that finds the copy behind, and the copy catches up."""
    url, proxy = proxied
    assert proxy is not None
    copy = tmp_path / "copy.db"
    w = open_writer(tmp_path / "w.db", url, hydrate=str(copy), poll=0.05, cache_size=SMALL_CACHE)
    try:
        with w:
            w.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
            w.executemany("INSERT INTO t VALUES (?, ?)", [(i, big_value(i)) for i in range(300)])
        wait_complete(w)
        shared = hydrated(copy)
        assert shared.on_demand and stats(w)["hydration_follows_on_demand"]
        for n in range(4):
            with w:
                w.execute("INSERT INTO t VALUES (?, ?)", (1000 + n, big_value(1000 + n)))
        last = writer_txid(w)
        wait_for(lambda: shared.hydrator.txid == last, "the writer's commits to reach the copy", DEADLINE)
        polls, hydrator_polls = stats(w)["polls"], shared.hydrator.polls
        levels_before = Counter(listed_prefix(r.path) for r in proxy.seen if r.kind == "LIST")
        wait_for(lambda: stats(w)["polls"] >= polls + 20, "20 polls of the writer's follower", DEADLINE)
        lists = [r for r in proxy.seen if r.kind == "LIST"]
        levels_after = Counter(listed_prefix(r.path) for r in lists)
        new = levels_after - levels_before
        assert shared.hydrator.polls == hydrator_polls, "the writer's copy polled on a timer"
        assert {p.rsplit("/", 2)[-2] for p in new} == {"0000"}, new  # only level 0: the follower's anchored polls
        # Another writer of the replica (this process, no copy) commits: the follower brings it to
        # the view, and the first transaction that finds the copy behind wakes the hydrator.
        other = open_writer(tmp_path / "other.db", url)
        try:
            with other:
                other.execute("INSERT INTO t VALUES (?, ?)", (5000, "from the other writer"))
            theirs = writer_txid(other)
        finally:
            other.close()
        wait_for(lambda: w.execute("SELECT count(*) FROM t WHERE id = 5000").fetchall() == [(1,)]
                 and shared.hydrator.txid == theirs, "the copy to catch up with the other writer", DEADLINE,
                 on_timeout=lambda: str(stats(w)))
        assert shared.wakes >= 1 and shared.hydrator.polls > hydrator_polls
        local = plain(copy)
        try:
            assert local.execute("SELECT v FROM t WHERE id = 5000").fetchall() == [("from the other writer",)]
        finally:
            local.close()
    finally:
        w.close()


def test_asking_for_the_progress_starts_hydration_at_once(history: History, file_url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection polling litestream_hydration_progress waits for the copy: no deferral."""
    conn, copy = deferred_copy(history, file_url, tmp_path, monkeypatch, 600.0, 600.0)
    try:
        wait_complete(conn)
        assert hydrated(copy).deferred < 600.0
        assert copy.read_bytes() == history.images[history.last_txid]
    finally:
        conn.close()


def test_a_reader_sharing_a_writers_copy_turns_timed_following_back_on(file_url: str, tmp_path: Path) -> None:
    """A writer's copy follows on demand; a reader attaching to the same copy needs it to follow
    the replica by itself (nothing applies commits for it), so the hydrator polls on its timer
    again from then on."""
    copy = tmp_path / "copy.db"
    w = open_writer(tmp_path / "w.db", file_url, hydrate=str(copy), poll=0.05, cache_size=SMALL_CACHE)
    try:
        with w:
            w.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
            w.execute("INSERT INTO t VALUES (1, 'one')")
        wait_complete(w)
        shared = hydrated(copy)
        assert shared.on_demand and shared.hydrator.on_demand
        r = connect(tmp_path / "w.db", file_url, hydrate=str(copy), poll=0.05)
        try:
            assert hydrated(copy) is shared
            assert not shared.on_demand and not shared.hydrator.on_demand
            assert not stats(r)["hydration_follows_on_demand"]
            polls = shared.hydrator.polls
            wait_for(lambda: shared.hydrator.polls >= polls + 5, "the copy to poll on its timer", DEADLINE)
        finally:
            r.close()
    finally:
        w.close()
