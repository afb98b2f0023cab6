"""The reader's side of the hint file (ltx/hint.py): fetched in one GET beside the first LIST,
applied only to the view of exactly the state it names.

A hint is an optimisation, never a source of truth: one that is missing, unreadable, damaged or
of another state is dropped (and counted), and the open goes on as if there were none.
"""

from __future__ import annotations

from ltx.errors import LTXError
from ltx.header import Header
from ltx.hint import HINT_KEY, Hint, read_hint
from ltx.store.base import ObjectStore, StoreError


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
