"""The hydration record: round trip, validation with the path named, atomic replacement."""

from __future__ import annotations

from pathlib import Path

import pytest

from hydrator.errors import HydrationStateError
from hydrator.state import HydrationState, PlannedFile, load_state, save_state, state_path


def _state() -> HydrationState:
    return HydrationState("s3://bucket/db?endpoint=http://127.0.0.1:1", page_size=4096, txid=5, timestamp=-3,
                          commit=12, dirty_until=7, pending=[PlannedFile(0, 6, 6, 900), PlannedFile(1, 7, 9, 4000)],
                          bytes_total=10_000, bytes_done=5100, complete=True)


def test_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    state = _state()
    save_state(db, state)
    assert state_path(db).name == "x.db-hydrator.json"
    assert load_state(db) == state
    assert HydrationState.decode(state.encode()) == state
    assert not state.consistent and HydrationState("file:///r", 4096, txid=3).consistent
    assert [p.name for p in tmp_path.iterdir()] == ["x.db-hydrator.json"]  # no temporary left


def test_missing_record_is_none(tmp_path: Path) -> None:
    assert load_state(tmp_path / "none.db") is None


@pytest.mark.parametrize(("text", "why"), [
    (b"{not json", "malformed"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"version": 99, "replica_url": "file:///r"}', "record version 99"),
    (b'{"version": 1, "replica_url": "file:///r", "txid": -1}', "txid is negative"),
    (b'{"version": 1, "replica_url": "file:///r", "txid": 2}', "without a page size"),
    (b'{"version": 1, "replica_url": "", "txid": 0}', "replica_url"),
    (b'{"version": 1, "replica_url": "file:///r", "page_size": 4096, "txid": 4, "dirty_until": 3}', "dirty_until"),
    (b'{"version": 1, "replica_url": "file:///r", "page_size": 4096, "txid": 4, '
     b'"pending": [{"level": 0, "min_txid": 7, "max_txid": 7, "size": 10}]}', "does not continue"),
    (b'{"version": 1, "replica_url": "file:///r", "surprise": 1}', "malformed"),
])
def test_bad_records_name_the_file(tmp_path: Path, text: bytes, why: str) -> None:
    db = tmp_path / "bad.db"
    state_path(db).write_bytes(text)
    with pytest.raises(HydrationStateError, match=why) as err:
        load_state(db)
    assert str(state_path(db)) in str(err.value)


def test_save_replaces_atomically(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    save_state(db, _state())
    newer = _state()
    newer.txid, newer.dirty_until, newer.pending = 9, 0, []
    save_state(db, newer)
    assert load_state(db) == newer
    with pytest.raises(HydrationStateError):
        save_state(db, HydrationState("file:///r", txid=1))  # invalid: refused, old record kept
    assert load_state(db) == newer
