"""Scans of large byte buffers with numpy: colons for the repeated-key screen, newlines for lines.
numpy compares 16+ bytes an instruction; bytes.count goes one at a time and would cost the
transform ~15% of its time."""

from __future__ import annotations

import os

# numpy's OpenBLAS otherwise starts a thread per core that spins for a while (0.1 s of CPU per
# process, on the function's one vCPU); nothing here does linear algebra.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy  # noqa: E402

COLON = ord(":")
_NEWLINE, _OPEN, _CLOSE = (ord(c) for c in "\n{}")
# `[` is 0x5B and `{` 0x7B: OR-ing in 0x20 makes both 0x7B, and no other byte becomes 0x7B.
_BRACKET_BIT = numpy.uint8(0x20)
# Blocks of the bracket count: 128 words of 8 bytes, so no byte of a word sum passes 255.
_BLOCK = 1024


def count_byte(data: bytes, value: int) -> int:
    """How many bytes of `data` equal `value`, without copying it."""
    return int(numpy.count_nonzero(numpy.frombuffer(data, numpy.uint8) == value))


def scan_chunk(data: bytes, end: int, most_brackets: int) -> tuple[int, bool, bool]:
    """`scan_lines`, and whether some line may hold more than `most_brackets` opening brackets
    (`[` or `{`): False means none does, True that one may (count those lines exactly).

    A line nests no deeper than its opening brackets. Counting them per line exactly would
    cost more than the rest of the scan; per 1 KiB block it is two passes and one sum, and a
    line's count is at most that of the blocks it touches (an event's ~2 KB line touches
    three or four, ~70 brackets against a limit of hundreds)."""
    if end == 0:
        return 0, True, False
    count, objects, newlines = _lines(data, end)
    text = numpy.frombuffer(data, numpy.uint8, count=end)
    opening = (text | _BRACKET_BIT) == _OPEN
    whole = end // _BLOCK * _BLOCK
    # Each bool is a byte 0 or 1; summed as 64-bit words, each byte of the sum counts its lane.
    lanes = opening[:whole].view(numpy.uint64).reshape(-1, _BLOCK // 8).sum(axis=1, dtype=numpy.uint64)
    blocks = lanes.view(numpy.uint8).reshape(-1, 8).sum(axis=1, dtype=numpy.int64)
    before = numpy.zeros(len(blocks) + 2, numpy.int64)  # brackets before block i (the last: the rest)
    numpy.cumsum(blocks, out=before[1:-1])
    before[-1] = before[-2] + numpy.count_nonzero(opening[whole:])
    starts = numpy.empty_like(newlines)
    starts[0], starts[1:] = 0, newlines[:-1] + 1
    bound = before[newlines // _BLOCK + 1] - before[starts // _BLOCK]
    return count, objects, bool((bound > most_brackets).any())


def opening_brackets(line: bytes) -> int:
    """The `[` and `{` of one line (inside strings too): no value in it nests deeper."""
    return line.count(b"[") + line.count(b"{")


def _lines(data: bytes, end: int):
    text = numpy.frombuffer(data, numpy.uint8, count=end)
    newlines = numpy.flatnonzero(text == _NEWLINE)
    objects = bool(text[0] == _OPEN and (text[newlines - 1] == _CLOSE).all() and (text[newlines[:-1] + 1] == _OPEN).all())
    return len(newlines), objects, newlines


def scan_lines(data: bytes, end: int) -> tuple[int, bool]:
    """How many lines `data[:end]` holds (it ends with a newline), and whether every one of them is
    `{…}`: it starts with `{` and ends with `}` right before its newline.

    Such lines cannot share a JSON value: a value going on past a line's closing `}` would have
    to go on with `,`, `}` or `]`, never `{`. So a parser of concatenated JSON values that finds
    as many values as lines has found exactly one per line."""
    if end == 0:
        return 0, True
    return _lines(data, end)[:2]
