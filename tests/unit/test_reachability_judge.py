"""The reachability verdict per pair, with what the sending endpoint's TCP knew (tcp_info)."""

from __future__ import annotations

from pytest_overlay.checks.reachability import judge

PING_OK = {"sent": 3, "received": 3}
PING_NONE = {"sent": 3, "received": 0}


def _tcp(ok: bool, pmtu: int = 0, retrans: int = 0, acked: int = 1) -> dict:
    tcp: dict = {"ok": ok, "bytes": 65536}
    if not ok:
        tcp["error"] = "timed out after 5 s, 0 of 65536 bytes acknowledged by the receiver"
        tcp["stalled"] = True
    if pmtu:
        tcp["tcp_info"] = {"pmtu": pmtu, "snd_mss": pmtu - 52, "rtt_us": 400,
                           "retransmits": retrans, "bytes_acked": acked}
    return tcp


def test_a_plain_pass() -> None:
    assert judge(PING_OK, _tcp(True, 1450), 1450) == (
        "pass", "ICMP echo and 64 KiB TCP transfer passed")
    assert judge(PING_OK, _tcp(True), 1450)[1] == "ICMP echo and 64 KiB TCP transfer passed"
    assert judge(PING_OK, _tcp(True, 1450))[0] == "pass"  # no MTU known: nothing to compare


def test_a_pass_by_path_mtu_discovery_says_so() -> None:
    out, msg = judge(PING_OK, _tcp(True, 1350, retrans=4), 1450)
    assert out == "pass"
    assert "path MTU is 1350, below its MTU of 1450" in msg
    assert "4 segments retransmitted" in msg and "see mtu" in msg


def test_a_stall_names_what_the_sender_knew() -> None:
    out, msg = judge(PING_OK, _tcp(False, 1450, retrans=9), 1450)
    assert out == "fail" and "small packets pass while large ones vanish" in msg
    assert "stalls (timed out after 5 s, 0 of 65536 bytes acknowledged" in msg
    assert msg.count("small packets") == 1
    assert "still used its full MTU of 1450, 9 segments retransmitted" in msg
    assert "nothing told it the path is smaller" in msg
    out, msg = judge(PING_OK, _tcp(False, 1350, retrans=2), 1450)
    assert out == "fail" and "path MTU is 1350" in msg and "nothing told it" not in msg


def test_no_echo_at_all() -> None:
    assert judge(PING_NONE, _tcp(False), 1450)[1].startswith("unreachable")
    assert "ICMP filtered" in judge(PING_NONE, _tcp(True), 1450)[1]


def test_a_stall_after_full_size_segments_crossed_is_not_called_an_mtu_problem() -> None:
    out, msg = judge(PING_OK, _tcp(False, 1450, retrans=30, acked=1 + 8 + 20000), 1450)
    assert out == "fail" and "stalls part-way" in msg and "heavy loss" in msg
    assert "overlay MTU problem" not in msg


def test_a_transfer_that_fails_at_once_is_not_a_stall() -> None:
    tcp = {"ok": False, "bytes": 65536, "error": "connect to 10.10.0.3:7 failed: Connection refused"}
    out, msg = judge(PING_OK, tcp, 1450)
    assert out == "fail" and "Connection refused" in msg
    assert "stall" not in msg and "MTU" not in msg
