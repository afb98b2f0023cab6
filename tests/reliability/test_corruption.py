"""Damaged replicas, each damage shown to every reader: `ltxctl verify` must report it, restore
and hydration must refuse the damaged file (an error naming it, nothing wrong left behind), and
reads through the VFS must fail with an error or give exactly the right rows, never others.

Damage: a flipped bit at a seeded position of a file the restore plan reads, the file cut short,
files swapped between levels, a missing file. A file the VFS reads by ranges (one larger than its
index fetch) is checked page by page against its page checksum sidecar (ltx/pagesums.py), which
our writer, import and compaction put beside every such file. Only a file without a sidecar (one
the real Litestream wrote) is left out of the VFS check for flips inside its LZ4 blocks: LTX
carries no per-page checksum, so a range read checks a frame's structure and LZ4 size but not its
literal bytes; verify, restore and hydration still must catch those, and do.
"""

from __future__ import annotations

import io
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import apsw
import pytest

from hydrator.errors import HydrationError
from hydrator.hydrator import Hydrator
from hydrator.state import load_state
from ltx import cli
from ltx.decoder import Decoder
from ltx.errors import LTXError
from ltx.frame import FRAME_PREFIX_SIZE
from ltx.hint import HINT_KEY, refresh_hint
from ltx.plan import LTXFileInfo, RestorePlanError, restore_plan
from ltx.reader import decode_tail
from ltx.replica import Replica
from ltx.restore import files_to_read, restore
from tests.reliability import tally
from tests.reliability.agreement import Expected, agreed_state, same, vfs_state
from tests.reliability.conftest import build_levels
from tests.vfs.replicas import History
from vfs.view import index_fetch_size

COMPACTED = 8
#: Seeded flips in the default suite (and behind the slow marker).
FLIPS = 40
FLIPS_SLOW = 400


@pytest.fixture(scope="module")
def template(history: History, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A replica (file://) with a snapshot, level 1 and a level-0 tail, built once and copied."""
    root = tmp_path_factory.mktemp("template") / "replica"
    replica = Replica.open(f"file://{root}")
    build_levels(history, replica, COMPACTED)
    replica.close()
    return root


@dataclass
class Damaged:
    """A damaged copy of the template: its URL, the objects damaged and how."""

    url: str
    replica: Replica
    keys: tuple[str, ...]
    how: str
    in_plan: bool
    #: For a missing file: the TXIDs the history lacks now, as errors print them.
    gap: str = ""

    def named_in(self, text: str) -> bool:
        if self.gap:
            return "gap" in text and self.gap in text
        return any(key in text for key in self.keys)


def copy_of(template: Path, tmp_path: Path) -> tuple[str, Replica]:
    root = tmp_path / "replica"
    shutil.copytree(template, root)  # keeps mtimes: the files' creation times stay the same
    url = f"file://{root}"
    return url, Replica.open(url)


def plan_files(replica: Replica) -> list[LTXFileInfo]:
    return files_to_read(restore_plan(replica.list_levels(), url=replica.url))


def write(replica: Replica, info: LTXFileInfo, data: bytes) -> None:
    replica.store.put(info.key, data, timestamp_ms=int(info.created_at.timestamp() * 1000))


def lz4_payloads(data: bytes, key: str) -> list[tuple[int, int]]:
    """Byte ranges of a file's LZ4 blocks (a frame minus its page header and size field)."""
    index = decode_tail(data, len(data), key).index
    return [(e.offset + FRAME_PREFIX_SIZE, e.offset + e.size) for e in index]


def vfs_checks_flip(info: LTXFileInfo, data: bytes, pos: int) -> bool:
    """Whether reads through the VFS can catch a flip at `pos`: anywhere in a file it reads whole
    or that has a page checksum sidecar, and outside the LZ4 blocks of any other."""
    if info.size <= index_fetch_size(info.size, info.sums_size) or info.sums_key is not None:
        return True
    return not any(start <= pos < end for start, end in lz4_payloads(data, info.key))


def same_pages(original: bytes, damaged: bytes) -> bool:
    """Whether damaged bytes still decode, checksum included, to the original's pages (a change
    inside an LZ4 block can leave its output alone: the file then means the same)."""
    try:
        return list(Decoder(io.BytesIO(damaged), "damaged").pages()) == list(
            Decoder(io.BytesIO(original), "original").pages())
    except LTXError:
        return False


def check_refused(d: Damaged, expected: Expected, workdir: Path, vfs_must_check: bool,
                  capsys: pytest.CaptureFixture[str]) -> str:
    """Every reader refuses the damage (or, the VFS, reads right); return what the VFS did."""
    tally.add(tally.CORRUPT)
    capsys.readouterr()
    assert cli.main(["verify", d.url]) == cli.EXIT_FAILURE, f"verify passed {d.how} of {d.keys}"
    report = capsys.readouterr().out
    for key in () if d.gap else d.keys:
        assert f"{d.url}/{key}" in report, f"verify did not name {key} ({d.how}):\n{report}"
    assert d.named_in(report) or not d.gap, f"verify did not report the gap {d.gap}:\n{report}"

    if d.in_plan:
        out = workdir / "restored.db"
        with pytest.raises((LTXError, RestorePlanError)) as caught:
            restore(d.replica, out)
        assert d.named_in(str(caught.value)), str(caught.value)
        assert not out.exists() and not Path(f"{out}.tmp").exists()

        local = workdir / "hydrated.db"
        with Hydrator(d.replica, local) as hydrator:
            with pytest.raises((HydrationError, RestorePlanError)) as refused:
                hydrator.run()
            assert not hydrator.is_complete
        assert d.named_in(str(refused.value)), str(refused.value)
        state = load_state(local)
        if state is not None and state.txid and state.consistent:  # what was applied is right
            same(local.read_bytes(), expected.image(state.txid), f"hydrated file at TXID {state.txid:x}")

    try:
        txid, rows = vfs_state(d.url, workdir / "vfs.db")
    except (apsw.CorruptError, apsw.IOError, apsw.CantOpenError) as exc:
        return f"refused: {type(exc).__name__}"
    except apsw.Error as exc:  # SQLite's own view of damage that slipped through
        assert not vfs_must_check, f"{d.how} of {d.keys}: {type(exc).__name__}: {exc}"
        return f"sqlite: {type(exc).__name__}"
    except UnicodeDecodeError:
        assert not vfs_must_check, f"{d.how} of {d.keys}: garbage text came through the VFS"
        return "garbage"
    last = expected.history.last_txid
    if vfs_must_check:
        same((txid, rows), (last, expected.rows(last)), f"VFS read of a replica with {d.how} of {d.keys}")
    elif (txid, rows) != (last, expected.rows(last)):
        return "wrong rows from an LZ4 block read by range (unchecked by design)"
    return "right"


def flips(template: Path, tmp_path: Path, expected: Expected, count: int, seed: int,
          capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    url, replica = copy_of(template, tmp_path)
    outcomes: dict[str, int] = {}
    try:
        files = plan_files(replica)
        rng = random.Random(seed)
        for n in range(count):
            info = files[n % len(files)]
            original = replica.store.get(info.key)
            pos = rng.randrange(len(original))
            damaged = bytearray(original)
            damaged[pos] ^= 1 << rng.randrange(8)
            write(replica, info, bytes(damaged))
            workdir = tmp_path / f"flip-{n}"
            workdir.mkdir()
            try:
                if same_pages(original, bytes(damaged)):  # e.g. an LZ4 match moved onto equal bytes
                    tally.add(tally.CORRUPT)
                    agreed_state(url, expected, workdir, expected.history.last_txid)
                    outcomes["harmless"] = outcomes.get("harmless", 0) + 1
                    continue
                must = vfs_checks_flip(info, original, pos)
                outcome = check_refused(Damaged(url, replica, (info.key,), f"a flip at byte {pos}", True), expected,
                                        workdir, must, capsys)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            finally:
                write(replica, info, original)
        agreed_state(url, expected, tmp_path / "after", expected.history.last_txid)
    finally:
        replica.close()
    return outcomes


def test_flipped_bits_are_refused_by_every_reader(template: Path, tmp_path: Path, expected: Expected,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = flips(template, tmp_path, expected, FLIPS, seed=1, capsys=capsys)
    assert sum(outcomes.values()) == FLIPS
    assert any(k.startswith("refused") for k in outcomes), outcomes


@pytest.mark.slow
def test_many_flipped_bits_are_refused_by_every_reader(template: Path, tmp_path: Path, expected: Expected,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = flips(template, tmp_path, expected, FLIPS_SLOW, seed=2, capsys=capsys)
    assert sum(outcomes.values()) == FLIPS_SLOW


def test_files_cut_short_are_refused_by_every_reader(template: Path, tmp_path: Path, expected: Expected,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    url, replica = copy_of(template, tmp_path)
    try:
        rng = random.Random(3)
        for n, info in enumerate(plan_files(replica)):
            original = replica.store.get(info.key)
            cut = rng.randrange(len(original))
            write(replica, info, original[:cut])
            workdir = tmp_path / f"cut-{n}"
            workdir.mkdir()
            try:
                check_refused(Damaged(url, replica, (info.key,), f"a cut at byte {cut}", True), expected, workdir,
                              True, capsys)
            finally:
                write(replica, info, original)
    finally:
        replica.close()


Swap = Callable[[list[LTXFileInfo], list[LTXFileInfo], list[LTXFileInfo]], tuple[LTXFileInfo, LTXFileInfo]]
#: Pairs of files whose bytes trade places: (level 0, level 1, level 9) -> (a, b).
SWAPS: dict[str, Swap] = {
    "snapshot and a level-0 file": lambda l0, l1, l9: (l9[0], l0[-3]),
    "level 1 and a level-0 file of the plan": lambda l0, l1, l9: (l1[0], l0[-1]),
    "two level-0 files of the plan": lambda l0, l1, l9: (l0[-2], l0[-5]),
}


@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_files_swapped_between_levels_are_refused(swap: str, template: Path, tmp_path: Path, expected: Expected,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    url, replica = copy_of(template, tmp_path)
    try:
        a, b = SWAPS[swap](replica.list_level(0), replica.list_level(1), replica.list_level(9))
        data_a, data_b = replica.store.get(a.key), replica.store.get(b.key)
        write(replica, a, data_b)
        write(replica, b, data_a)
        assert b.key in {f.key for f in plan_files(replica)}
        check_refused(Damaged(url, replica, (a.key, b.key), f"{swap} swapped", True), expected, tmp_path, True,
                      capsys)
    finally:
        replica.close()


def test_a_missing_file_of_the_plan_is_a_gap_everyone_reports(template: Path, tmp_path: Path, expected: Expected,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    url, replica = copy_of(template, tmp_path)
    try:
        victim = replica.list_level(0)[-4]
        replica.delete_file(victim)
        check_refused(Damaged(url, replica, (victim.key,), "missing", True,
                              gap=f"{victim.min_txid:016x}..{victim.max_txid:016x}"), expected, tmp_path, True, capsys)
    finally:
        replica.close()


def test_a_missing_file_another_level_covers_is_reported_and_read_around(
        template: Path, tmp_path: Path, expected: Expected, capsys: pytest.CaptureFixture[str]) -> None:
    """A level-0 file that level 1 and the snapshot cover goes: verify reports the hole in level 0;
    restore, hydration and the VFS read the whole history through the other levels."""
    url, replica = copy_of(template, tmp_path)
    try:
        victim = replica.list_level(0)[COMPACTED // 2]
        assert victim.max_txid <= COMPACTED
        replica.delete_file(victim)
        tally.add(tally.CORRUPT)
        assert cli.main(["verify", url]) == cli.EXIT_FAILURE
        gap = f"gap in level 0: TXIDs {victim.min_txid:016x}..{victim.max_txid:016x} are missing"
        assert gap in capsys.readouterr().out
    finally:
        replica.close()
    agreed_state(url, expected, tmp_path / "after", expected.history.last_txid, tolerate=("gap in level 0",))


def test_a_damaged_or_stale_hint_is_never_served(template: Path, tmp_path: Path, expected: Expected) -> None:
    """The hint (page 1 and interior pages of one state, ltx/hint.py) with flipped bits, cut
    short, or left over from an older state: reads through the VFS give the right rows."""
    url, replica = copy_of(template, tmp_path)
    last = expected.history.last_txid
    try:
        older = refresh_hint(replica)
        assert older.header is not None and older.header.txid == last
        good = replica.store.get(HINT_KEY)
        rng = random.Random(4)
        variants = [bytes(good[:cut]) for cut in (0, 40, len(good) // 2, len(good) - 1)]
        for _ in range(20):
            damaged = bytearray(good)
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
            variants.append(bytes(damaged))
        for n, data in enumerate(variants):
            tally.add(tally.CORRUPT)
            replica.store.put(HINT_KEY, data)
            txid, rows = vfs_state(url, tmp_path / f"vfs-{n}.db")
            same((txid, rows), (last, expected.rows(last)), f"VFS read beside hint variant {n}")
        replica.store.put(HINT_KEY, good)  # a hint of TXID `last` beside a replica that lost it
        replica.delete_file(replica.list_level(0)[-1])
        tally.add(tally.CORRUPT)
        txid, rows = vfs_state(url, tmp_path / "vfs-stale.db")
        same((txid, rows), (last - 1, expected.rows(last - 1)), "VFS read beside a hint of a state it does not read")
    finally:
        replica.close()
