"""Fixtures for the ltx tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import ltx.decoder


@pytest.fixture(params=["c-loop", "python-loop"])
def frame_loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test once through the C frame loop (ltx._frames) and once through the Python loop:
    the two must accept, refuse and name exactly the same things."""
    if request.param == "python-loop":
        monkeypatch.setattr(ltx.decoder, "_frames", None)
    else:
        assert ltx.decoder.native_frames(), "ltx._frames was not built (is a C compiler installed?)"
    yield request.param
