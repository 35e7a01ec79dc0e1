"""The data plane's epoll bookkeeping (no root: pipes stand in for TAPs)."""

from __future__ import annotations

import os
import select

from overlay_agent.io.dataplane import _sync_epoll


def test_sync_registers_new_and_drops_removed_descriptors():
    ep = select.epoll()
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    try:
        have = _sync_epoll(ep, {}, {a_r: 1, b_r: 2})
        assert have == {a_r: 1, b_r: 2}
        os.write(a_w, b"x")
        os.write(b_w, b"x")
        assert {fd for fd, _ in ep.poll(0)} == {a_r, b_r}
        have = _sync_epoll(ep, have, {b_r: 2})
        assert have == {b_r: 2}
        assert {fd for fd, _ in ep.poll(0)} == {b_r}
    finally:
        ep.close()
        for fd in (a_r, a_w, b_r, b_w):
            os.close(fd)


def test_sync_survives_a_descriptor_retired_under_it():
    """A TAP retired between the snapshot and the sync points at /dev/null, which epoll refuses:
    it is left out (not an exception that would end the data thread), and a registration the
    kernel already dropped (the TAP closed) is unregistered without complaint."""
    ep = select.epoll()
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDWR)
    try:
        have = _sync_epoll(ep, {}, {r: 1})
        os.dup2(null, r)  # as Dataplane.retire_tap does: the pipe's end is closed
        assert _sync_epoll(ep, have, {}) == {}
        assert _sync_epoll(ep, {}, {r: 1, w: 2}) == {w: 2}
    finally:
        ep.close()
        for fd in (r, w, null):
            os.close(fd)
