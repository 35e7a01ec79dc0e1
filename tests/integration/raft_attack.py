"""Attacker for the Raft port, run inside a lab namespace: ``python3 raft_attack.py MODE IP PORT``.

Reads the run secret (hex) on stdin when MODE needs it, prints one JSON line with what happened.
MODE: garbage | pickle (a pickle that would create the file named on stdin) | replay.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import struct
import sys
import time
import zlib


class Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.path}",))


def frame(data: bytes) -> bytes:
    return struct.pack("i", len(data)) + data


def connect(ip: str, port: int) -> socket.socket:
    s = socket.create_connection((ip, port), timeout=3)
    s.settimeout(3)
    return s


def closed_by_peer(s: socket.socket, wait: float = 2.0) -> bool:
    """True when the agent dropped the connection (EOF or reset) within ``wait`` s."""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            if s.recv(65536) == b"":
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
    return False


def read_frame(s: socket.socket) -> bytes:
    buf = b""
    while len(buf) < 4:
        buf += s.recv(4 - len(buf))
    n = struct.unpack("i", buf)[0]
    data = b""
    while len(data) < n:
        data += s.recv(n - len(data))
    return data


def main() -> None:
    mode, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = {}
    if mode == "garbage":
        for i, blob in enumerate([os.urandom(3), os.urandom(5000), struct.pack("i", -5) + b"x" * 64,
                                  frame(b"OVR1" + b"\x03" + os.urandom(60)), b"\x00" * 4]):
            s = connect(ip, port)
            s.sendall(blob)
            # blob1 starts with a huge length: dropped by the handshake deadline (3 s).
            out[f"blob{i}_closed"] = closed_by_peer(s, 5.0 if i == 1 else 2.0) if i not in (0, 4) else None
            s.close()
    elif mode == "pickle":
        path = sys.stdin.readline().strip()
        evil = pickle.dumps(Evil(path))
        for i, blob in enumerate([frame(zlib.compress(evil)), frame(evil), evil]):
            s = connect(ip, port)
            s.sendall(blob)
            out[f"pickle{i}_closed"] = closed_by_peer(s) if i < 2 else None
            s.close()
    elif mode == "replay":
        from overlay_agent.core.raftauth import ReplayCache, Session, derive_key

        key = derive_key(bytes.fromhex(sys.stdin.readline().strip()), b"mac")
        sess = Session(key, True, ReplayCache())
        hello = frame(sess.seal(zlib.compress(pickle.dumps(os.urandom(32), 2)), time.time(),
                                os.urandom(16)))
        s1 = connect(ip, port)
        s1.sendall(hello)
        reply = read_frame(s1)
        # pysyncobj's own handshake: the acceptor answers (our key, its key).
        rand_b = pickle.loads(zlib.decompress(sess.open(reply, time.time())))[1]
        data = frame(sess.seal(zlib.compress(pickle.dumps((rand_b, "readonly"), 2)), time.time(),
                               os.urandom(16)))
        s1.sendall(data)
        out["legit_session_open"] = not closed_by_peer(s1, 0.5)
        s1.sendall(data)  # the same DATA frame again: sequence replay
        out["data_replay_closed"] = closed_by_peer(s1)
        s1.close()
        s2 = connect(ip, port)
        s2.sendall(hello)  # the same HELLO on a new connection
        out["hello_replay_closed"] = closed_by_peer(s2)
        s2.close()
        old = Session(key, True, ReplayCache())
        stale = frame(old.seal(zlib.compress(pickle.dumps(b"x", 2)), time.time() - 3600,
                               os.urandom(16)))
        s3 = connect(ip, port)
        s3.sendall(stale)  # a HELLO recorded an hour ago
        out["stale_hello_closed"] = closed_by_peer(s3)
        s3.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
