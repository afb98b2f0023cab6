"""The reader's side of the hint file (ltx/hint.py): fetched in one GET beside the first LIST,
applied only to the view of exactly the state it names.

A hint is an optimisation, never a source of truth: one that is missing, unreadable, damaged or
of another history is dropped (and counted), and the open goes on as if there were none. A hint of
an earlier state of this history (a writer's commits since its compactor's last round) still
serves the pages that no later file of the view touches: the header of a listed file ending at the
hint's TXID, fetched in the same round trip as the page indexes, must agree with the hint's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ltx.errors import LTXError
from ltx.header import Header
from ltx.hint import HINT_KEY, Hint, decode_hint, read_hint
from ltx.plan import LTXFileInfo
from ltx.store.base import ObjectStore, StoreError

if TYPE_CHECKING:
    from vfs.pagemap import SourceFile


class HintOutcome:
    """Why a hint was or was not used (for `ltxvfs_stats`)."""

    USED = "used"
    ABSENT = "absent"
    STALE = "stale"
    UNREADABLE = "unreadable"


def fetch_hint(store: ObjectStore) -> tuple[Hint | None, str]:
    """The replica's hint, decoded and checked, or None with the reason it is not there."""
    try:
        hint = read_hint(store, HINT_KEY)
    except (StoreError, LTXError, OSError):
        return None, HintOutcome.UNREADABLE
    if hint is None:
        return None, HintOutcome.ABSENT
    return hint, HintOutcome.USED


def hint_from_answer(data: bytes | None, error: BaseException | None) -> tuple[Hint | None, str]:
    """`fetch_hint`'s answer from a GET already made (vfs/firstlook.py): its bytes (None: no hint),
    or the error it raised."""
    if error is not None:
        if isinstance(error, StoreError | OSError):
            return None, HintOutcome.UNREADABLE
        raise error
    if data is None:
        return None, HintOutcome.ABSENT
    try:
        return decode_hint(data, HINT_KEY), HintOutcome.USED
    except (LTXError, OSError):
        return None, HintOutcome.UNREADABLE


def may_apply(hint: Hint | None, txid: int) -> bool:
    """Before the headers are in: whether the hint can be of the state at `txid` at all."""
    return hint is not None and hint.header.txid == txid


def hint_pages(hint: Hint | None, txid: int, newest: Header, commit: int, page_size: int) -> list[tuple[int, bytes]]:
    """The hint's pages when it holds exactly the view's state: same TXID, and the same timestamp,
    commit and page size as the newest planned file's header (which tells histories apart that
    reached the same TXID). Otherwise none."""
    if hint is None or not hint.header.matches(txid, newest.timestamp, commit, page_size):
        return []
    return sorted(hint.pages.items())


def hint_probe(hint: Hint | None, plan: Sequence[LTXFileInfo],
               levels: Mapping[int, Sequence[LTXFileInfo]]) -> LTXFileInfo | None:
    """The listed file whose header tells whether `hint`, of a state before the plan's last and
    after its first file, is of this history (the smallest one ending at the hint's TXID); None
    when the hint needs no probe or cannot have one."""
    if hint is None or not plan:
        return None
    txid = hint.header.txid
    if not plan[0].max_txid <= txid < plan[-1].max_txid:
        return None
    ending = [f for files in levels.values() for f in files if f.max_txid == txid]
    return min(ending, key=lambda f: f.size) if ending else None


def older_hint_pages(hint: Hint, probed: Header, files: Sequence[SourceFile], commit: int,
                     page_size: int) -> list[tuple[int, bytes]]:
    """The pages of a hint of an earlier state of this history (`probed`, the header of a file
    ending at its TXID, agrees with it) that no planned file ending after that state holds (such a
    file may have changed them), and that the view's commit keeps."""
    h = hint.header
    if not h.matches(probed.max_txid, probed.timestamp, probed.commit, page_size):
        return []
    touched: set[int] = set()
    for f in files:
        if f.info.max_txid > h.txid:
            pgnos = f.index.pgnos
            touched.update(pgnos[i] for i in range(len(pgnos)))
    return sorted((p, page) for p, page in hint.pages.items() if p <= commit and p not in touched)
