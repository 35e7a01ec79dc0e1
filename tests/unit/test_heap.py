"""io/heap.py: the agent keeps its heap's free top instead of trimming it after every burst.

Each case runs in a fresh interpreter (the setting is per process): 40 blocks of 100 KB (below
glibc's mmap threshold, so on the heap) are freed, and ``mallinfo2`` tells whether the heap
gave the memory back to the kernel (the C library's default) or kept it (``heap.keep``)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

AGENTS = Path(__file__).resolve().parents[2] / "agents"

try:
    _HAS_MALLINFO2 = hasattr(ctypes.CDLL(None), "mallinfo2")
except OSError:
    _HAS_MALLINFO2 = False

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _HAS_MALLINFO2,
    reason="needs glibc 2.33 or later (mallopt, mallinfo2)")

PROBE = """
import ctypes, json
from overlay_agent.io import heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
                .split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
took = heap.keep()
blocks = [bytes(100_000) for _ in range(40)]
before = libc.mallinfo2().arena
del blocks
after = libc.mallinfo2().arena
print(json.dumps({"took": took, "kept": heap.kept, "before": before, "after": after}))
"""


def _probe(**env: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], check=True, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(AGENTS), **env}, timeout=60)
    return json.loads(out.stdout)


def test_keep_leaves_the_freed_top_of_the_heap_in_place() -> None:
    r = _probe()
    assert r["took"] is True and r["kept"] is True, r
    assert r["after"] >= r["before"] - 512 * 1024, r  # 4 MB freed, all of it kept


def test_without_keep_the_heap_gives_it_back() -> None:
    # The control: the same frees with the C library's defaults shrink the heap, so the
    # case above measures heap.keep and not an allocator that never trims.
    r = _probe(OVERLAY_HEAP_KEEP="0")
    assert r["took"] is False and r["kept"] is False, r
    assert r["after"] <= r["before"] - 3 * 1024 * 1024, r
