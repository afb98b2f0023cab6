"""The ltxvfs writer under S3 faults (through the seeded fault proxy in front of the real server):
every COMMIT that returned is in the replica, nothing else is but commits whose outcome the writer
could not know, a failed COMMIT is an error naming the store and leaves the connection usable,
and verify, restore, hydration and the VFS agree on the result."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import apsw
import pytest

from ltx.store.retry import DEFAULT_MAX_RETRIES
from tests.reliability import tally
from tests.reliability.agreement import agreed_rows
from tests.reliability.rowwriter import open_writer, write_rows
from tests.s3proxy import ALL_FAULTS, Fault, FaultSchedule, S3Proxy
from tests.s3server import S3Server
from tests.vfs.replicas import stats

COMMITS = 40
#: TXIDs whose PUT lands but is never confirmed, and whose PUT never lands (see the test).
LANDS_UNANSWERED = 6
NEVER_LANDS = 10
#: Attempts allowed in the unbounded-fault run to reach its acknowledged commits.
MAX_ATTEMPTS = 80


def through(url: str, s3_server: S3Server, proxy: S3Proxy) -> str:
    return url.replace(s3_server.endpoint, proxy.url)


#: Faults that fail a request outright (no stall, which only slows it).
FAILING = (Fault.status(500, "InternalError"), Fault.status(503, "SlowDown"), Fault.reset(), Fault.drop_after_forward())
#: Group commit ships few files (how many depends on timing): every PUT meets two faults first.
SCHEDULES = {
    "commit": lambda: FaultSchedule(seed=21, rate=0.35, max_in_a_row=2),
    "interval:20ms": lambda: FaultSchedule(seed=22, rate=1.0, faults=FAILING, max_in_a_row=2,
                                           methods=frozenset({"PUT"})),
}


@pytest.mark.parametrize("sync", sorted(SCHEDULES))
def test_every_commit_gets_through_transient_faults(sync: str, s3_server: S3Server, s3_url: str,
                                                    tmp_path: Path) -> None:
    schedule = SCHEDULES[sync]()
    acked: set[int] = set()
    with S3Proxy(s3_server.endpoint, schedule=schedule) as proxy:
        conn = open_writer(tmp_path / "w.db", through(s3_url, s3_server, proxy), sync=sync)
        try:
            write_rows(conn, COMMITS, acked.add)
            retries = stats(conn)["retries"]
        finally:
            conn.close()  # group commit: ships what is left before it returns
        tally.add(tally.FAULTS, proxy.faults_injected)
        assert proxy.faults_injected >= 2, proxy.fault_counts()
    assert acked == set(range(COMMITS))
    assert retries >= 1 or sync != "commit", "faults were injected but the writer's store never retried"
    rows = agreed_rows(s3_url, tmp_path / "check", acked, set())
    assert sorted(rows) == sorted(acked)


def error_text(exc: BaseException) -> str:
    """An error and the errors it was raised from or during (apsw reports a failed COMMIT as
    SQLite's result code, e.g. 'disk I/O error', raised during the VFS's own error)."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


class Failures:
    """What the row writer's failed COMMITs were; each must be an SQLite error naming the store."""

    def __init__(self) -> None:
        self.unsure: set[int] = set()
        self.kinds: list[str] = []

    def __call__(self, seq: int, exc: apsw.Error) -> bool:
        assert isinstance(exc, apsw.IOError | apsw.BusyError | apsw.CorruptError), repr(exc)
        text = error_text(exc)
        assert "s3://" in text and ".ltx" in text, text
        self.unsure.add(seq)
        self.kinds.append(type(exc).__name__)
        return True


def txid_of(path: str) -> int | None:
    match = re.search(r"/0000/([0-9a-f]{16})-[0-9a-f]{16}\.ltx", path)
    return int(match.group(1), 16) if match else None


def test_failed_commits_leave_the_writer_usable_and_lose_nothing(s3_server: S3Server, s3_url: str,
                                                                  tmp_path: Path) -> None:
    """The PUT of TXID 6 lands but every answer is lost or refused until the retries run out: a
    failed COMMIT whose file is in the store. The PUT of TXID 10 never lands in seven attempts.
    Each COMMIT fails with an error naming the store; the writer goes on (it finds the landed file
    by itself, or its next commit meets it as a conflict, after which it reads it); every
    acknowledged commit is there, and the landed one too."""
    attempts: Counter[int] = Counter()
    gives_up = DEFAULT_MAX_RETRIES + 1

    def plan(method: str, path: str, index: int) -> Fault:
        txid = txid_of(path)
        if method != "PUT" or txid is None:
            return Fault.forward()
        n = attempts[txid]
        attempts[txid] += 1
        if txid == LANDS_UNANSWERED and n < gives_up:
            return Fault.drop_after_forward() if n == 0 else Fault.status(503, "SlowDown")
        if txid == NEVER_LANDS and n < gives_up:
            return Fault.status(503, "SlowDown")
        return Fault.forward()

    acked: set[int] = set()
    failures = Failures()
    with S3Proxy(s3_server.endpoint, plan) as proxy:
        conn = open_writer(tmp_path / "w.db", through(s3_url, s3_server, proxy))
        try:
            write_rows(conn, 16, acked.add, failures)
        finally:
            conn.close()
        tally.add(tally.FAULTS, proxy.faults_injected)
    assert failures.kinds.count("IOError") == 2 and set(failures.kinds) <= {"IOError", "BusyError"}, failures.kinds
    rows = agreed_rows(s3_url, tmp_path / "check", acked, failures.unsure)
    landed = set(rows) - acked
    assert len(landed) == 1, f"the commit whose answers were lost should be there: {sorted(landed)}"
    assert len(acked) == 16 - len(failures.kinds)


@pytest.mark.slow
def test_any_fault_loses_no_acknowledged_commit(s3_server: S3Server, s3_url: str, tmp_path: Path) -> None:
    """Unbounded faults of every kind: some COMMITs fail (an error naming the store, the
    transaction rolled back, the connection still usable); none that returned is lost."""
    schedule = FaultSchedule(seed=23, rate=0.6, faults=ALL_FAULTS, max_in_a_row=None)
    acked: set[int] = set()
    failures = Failures()
    with S3Proxy(s3_server.endpoint, schedule=schedule) as proxy:
        url = through(s3_url, s3_server, proxy)
        conn = None
        attempts = 0
        while len(acked) < COMMITS and attempts < MAX_ATTEMPTS:
            attempts += 1
            try:
                if conn is None:
                    conn = open_writer(tmp_path / "w.db", url)
                write_rows(conn, 1, acked.add, failures)
            except apsw.CantOpenError as exc:  # the open itself ran out of retries
                assert "s3://" in error_text(exc), error_text(exc)
        if conn is not None:
            conn.close()
        tally.add(tally.FAULTS, proxy.faults_injected)
    assert len(acked) >= COMMITS, f"only {len(acked)} commits in {attempts} attempts: {failures.kinds}"
    agreed_rows(s3_url, tmp_path / "check", acked, failures.unsure)
