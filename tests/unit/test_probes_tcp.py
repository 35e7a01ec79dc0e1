"""What the transfer probe reads from TCP_INFO, and how it words a stall (no sockets needed)."""

from __future__ import annotations

import struct
from typing import Optional

from overlay_agent.io.probes import _stall, tcp_info


class _Sock:
    """Answers getsockopt(TCP_INFO) with the bytes a kernel of a given age would give."""

    def __init__(self, raw: Optional[bytes]) -> None:
        self.raw = raw

    def getsockopt(self, level: int, opt: int, size: int) -> bytes:
        if self.raw is None:
            raise OSError(92, "Protocol not available")
        return self.raw[:size]


def _raw(length: int) -> bytes:
    buf = bytearray(max(length, 128))
    struct.pack_into("=I", buf, 16, 1398)       # tcpi_snd_mss
    struct.pack_into("=I", buf, 60, 1450)       # tcpi_pmtu
    struct.pack_into("=I", buf, 68, 512)        # tcpi_rtt
    struct.pack_into("=I", buf, 100, 7)         # tcpi_total_retrans
    struct.pack_into("=Q", buf, 120, 1 + 8 + 2796)  # tcpi_bytes_acked
    return bytes(buf[:length])


def test_tcp_info_fields_by_offset() -> None:
    assert tcp_info(_Sock(_raw(232))) == {  # type: ignore[arg-type]
        "snd_mss": 1398, "pmtu": 1450, "rtt_us": 512, "retransmits": 7, "bytes_acked": 2805}


def test_an_older_kernel_has_no_bytes_acked_and_a_very_old_one_nothing() -> None:
    old = tcp_info(_Sock(_raw(104)))  # type: ignore[arg-type]
    assert old == {"snd_mss": 1398, "pmtu": 1450, "rtt_us": 512, "retransmits": 7}
    assert tcp_info(_Sock(_raw(100))) is None  # type: ignore[arg-type]
    assert tcp_info(_Sock(None)) is None  # type: ignore[arg-type]


def test_a_stall_is_told_in_acknowledged_bytes() -> None:
    info = {"bytes_acked": 1}  # the SYN only: no data segment arrived
    assert _stall(5.0, 65536, 65536, info) == (
        "timed out after 5 s, 0 of 65536 bytes acknowledged by the receiver")
    assert _stall(5.0, 65536, 65536, {"bytes_acked": 1 + 8 + 2796}).endswith(
        ", 2796 of 65536 bytes acknowledged by the receiver")
    # Without bytes_acked only what the socket took is known, and said as such.
    assert _stall(5.0, 65536, 40000, None) == (
        "timed out after 5 s, 40000 of 65536 bytes handed to the sending socket")
    assert _stall(2.5, 65536, 0, info) == "timed out after 2.5 s"
