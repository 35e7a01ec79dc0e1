"""GsoSender's answers to a refused GSO send (io/gso.py).

This kernel says EMSGSIZE when a GSO send's segments exceed the path MTU (the integration test
tests/integration/test_ptb_relay.py meets it for real); older kernels say EINVAL, which must not
turn GSO off for good. Those errors are what this stand-in socket returns; everything else is
the real GsoSender.
"""

from __future__ import annotations

import errno
from typing import Dict, List, Optional, Tuple

from overlay_agent.io.gso import GsoSender

DEST = ("198.18.0.3", 4789)
Addr = Tuple[str, int]


class RefusingSocket:
    """sendmsg (GSO) fails with ``gso_errno``; sendto takes datagrams up to ``fits`` bytes."""

    def __init__(self, gso_errno: int, fits: int) -> None:
        self.gso_errno, self.fits = gso_errno, fits
        self.sent: List[bytes] = []

    def sendmsg(self, parts: List[bytes], anc: object, flags: int, dest: Addr) -> int:
        raise OSError(self.gso_errno, "refused")

    def sendto(self, data: bytes, dest: Addr) -> int:
        if len(data) > self.fits:
            raise OSError(errno.EMSGSIZE, "Message too long")
        self.sent.append(data)
        return len(data)


def _run(gso_errno: int, path_mtu: Optional[int]) -> Tuple[GsoSender, RefusingSocket,
                                                          Dict[str, int], List[bytes]]:
    # the path takes IP packets of path_mtu bytes: path_mtu - 28 of UDP payload
    sock = RefusingSocket(gso_errno, fits=(path_mtu or 1500) - 28)
    errors: Dict[str, int] = {}
    too_big: List[bytes] = []

    def on_error(what: str, e: OSError) -> None:
        key = f"{what}:{errno.errorcode[e.errno or 0]}"
        errors[key] = errors.get(key, 0) + 1

    sender = GsoSender(sock, on_error, enabled=True,  # type: ignore[arg-type]
                       too_big=lambda dest, d: too_big.append(d),
                       path_mtu=lambda dest: path_mtu)
    sender.add_run(DEST, [b"a" * 1472, b"b" * 1472, b"c" * 300])  # two full, a short last one
    sender.flush()
    return sender, sock, errors, too_big


def test_emsgsize_sends_each_one_and_reports_the_oversized() -> None:
    sender, sock, errors, too_big = _run(errno.EMSGSIZE, 1400)
    assert sender.enabled
    assert sock.sent == [b"c" * 300]  # the short last one fits the path
    assert too_big == [b"a" * 1472, b"b" * 1472]
    assert errors == {"send:EMSGSIZE": 2}


def test_einval_beyond_the_path_mtu_is_a_path_mtu_refusal_not_a_device_limit() -> None:
    sender, sock, errors, too_big = _run(errno.EINVAL, 1400)
    assert sender.enabled, "GSO must stay on: the path, not the device, refused"
    assert sock.sent == [b"c" * 300] and len(too_big) == 2
    assert "gso-off:EINVAL" not in errors


def test_einval_within_the_path_mtu_turns_gso_off() -> None:
    sender, sock, errors, too_big = _run(errno.EINVAL, 1500)
    assert not sender.enabled
    assert errors.get("gso-off:EINVAL") == 1
    assert sock.sent == [b"a" * 1472, b"b" * 1472, b"c" * 300] and too_big == []


def test_einval_with_the_path_mtu_unknown_turns_gso_off() -> None:
    sender, _sock, errors, _too_big = _run(errno.EINVAL, None)
    assert not sender.enabled and errors.get("gso-off:EINVAL") == 1
