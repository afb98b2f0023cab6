"""Checking a sidecar's spans (ltx/pagesums.py) against an LTX file while it is read as a stream:
the bytes pass through unchanged and the frames are walked beside the decoder, so `ltxctl verify`
reports spans that do not describe the file's frames without reading it twice."""

from __future__ import annotations

import struct
from array import array
from typing import BinaryIO

from ltx.frame import FRAME_PREFIX_SIZE, PAGE_HEADER_SIZE
from ltx.header import HEADER_SIZE
from ltx.pagesums import FrameSpans, frame_check, span_check

_SIZE = struct.Struct(">I")


class SpanWatch:
    """A readable stream over `src` that walks the frames it passes and checks them by span."""

    def __init__(self, src: BinaryIO, spans: FrameSpans, pages: int) -> None:
        self._src = src
        self._spans = spans
        self._pages = pages
        self._pos = 0
        self._buf = bytearray()
        self._span = 0
        self._frames = 0
        self._span_bytes = 0
        self._checks = array("I")
        #: Spans whose frames differ from their length or check value (index of the span).
        self.bad: list[int] = []
        self.done = len(spans) == 0

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        if not self.done and data:
            self._feed(data)
        return data

    def _feed(self, data: bytes) -> None:
        start = self._pos
        self._pos += len(data)
        if self._pos <= HEADER_SIZE:
            return
        self._buf += memoryview(data)[max(0, HEADER_SIZE - start):]
        while not self.done and len(self._buf) >= FRAME_PREFIX_SIZE:
            (block,) = _SIZE.unpack_from(self._buf, PAGE_HEADER_SIZE)
            size = FRAME_PREFIX_SIZE + block
            if len(self._buf) < size:
                return
            self._checks.append(frame_check(memoryview(self._buf)[:size]))
            del self._buf[:size]
            self._span_bytes += size
            self._frames += 1
            self._next_span_if_full()

    def _next_span_if_full(self) -> None:
        spans = self._spans
        k = self._span
        in_span = min(spans.stride, self._pages - k * spans.stride)
        if self._frames < in_span:
            return
        if self._span_bytes != spans.lengths[k] or span_check(self._checks) != spans.checks[k]:
            self.bad.append(k)
        self._span += 1
        self._frames = self._span_bytes = 0
        self._checks = array("I")
        self.done = self._span >= len(spans)
