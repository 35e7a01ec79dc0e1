"""The agent end of the JSON-lines protocol (overlay_agent.rpc), in memory and as a process.

Only methods that need no root are called: hello, create_network, set_members, counters and
the error paths of the others.
"""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import threading
import zipfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import pytest

import overlay_agent
from overlay_agent.agent import Agent, AgentError
from overlay_agent.methods import rpc
from overlay_agent.rpc import RpcServer

AGENTS_DIR = Path(__file__).resolve().parents[2] / "agents"
CAPABILITY_KEYS = {"root", "tun", "kernel_vxlan", "iproute2", "python"}
HELLO = {"id": 1, "method": "hello", "params": {"protocol": overlay_agent.PROTOCOL_VERSION}}

Line = Union[bytes, Dict[str, Any]]


def encode(line: Line) -> bytes:
    if isinstance(line, dict):
        return json.dumps(line).encode() + b"\n"
    return line + b"\n"


def run_server(lines: Sequence[Line], agent: Any = None) -> Tuple[str, List[Dict[str, Any]]]:
    """Serve ``lines`` to completion; returns how serve() ended and every response, in order."""
    infile = io.BytesIO(b"".join(encode(x) for x in lines))
    out = io.BytesIO()
    agent = agent if agent is not None else Agent()
    server = RpcServer(agent, infile, out, workers=4)
    try:
        how = server.serve()
        server._pool.shutdown(wait=True)  # slow methods answer from the pool
    finally:
        if isinstance(agent, Agent):
            agent.cleanup()
    raw = out.getvalue()
    assert raw.endswith(b"\n") or raw == b""
    return how, [json.loads(x) for x in raw.splitlines()]


def by_id(responses: List[Dict[str, Any]]) -> Dict[Any, Dict[str, Any]]:
    return {r["id"]: r for r in responses}


def error_code(response: Dict[str, Any]) -> str:
    assert "result" not in response, response
    return str(response["error"]["code"])


# -- handshake --------------------------------------------------------------------------------------


def test_hello_with_our_protocol() -> None:
    how, [resp] = run_server([HELLO])
    assert how == "eof"
    assert resp["id"] == 1 and "error" not in resp
    result = resp["result"]
    assert result["protocol"] == overlay_agent.PROTOCOL_VERSION == 1
    assert result["agent_version"] == overlay_agent.__version__
    assert result["pid"] == os.getpid()
    caps = result["capabilities"]
    assert set(caps) >= CAPABILITY_KEYS
    assert all(isinstance(caps[k], bool) for k in CAPABILITY_KEYS - {"python"})
    assert caps["python"] == ".".join(map(str, sys.version_info[:3]))


def test_hello_with_another_protocol_is_a_version_error() -> None:
    _, [resp] = run_server([{"id": "h", "method": "hello", "params": {"protocol": 99}}])
    assert resp["id"] == "h"
    assert error_code(resp) == "version"
    assert "99" in resp["error"]["message"] and "rebuild" in resp["error"]["message"]


def test_hello_without_protocol_is_invalid() -> None:
    _, [resp] = run_server([{"id": 2, "method": "hello"}])
    assert (resp["id"], error_code(resp)) == (2, "invalid")


# -- framing and dispatch --------------------------------------------------------------------------


def test_unknown_method_is_an_error_and_the_server_goes_on() -> None:
    how, responses = run_server([{"id": 5, "method": "format_disk"}, HELLO])
    assert how == "eof"
    assert [r["id"] for r in responses] == [5, 1]
    assert error_code(responses[0]) == "unknown-method"
    assert "format_disk" in responses[0]["error"]["message"]
    assert "result" in responses[1]


def test_private_and_inherited_attributes_are_not_methods() -> None:
    _, responses = run_server(
        [
            {"id": 1, "method": "cleanup"},
            {"id": 2, "method": "__init__"},
            {"id": 3, "method": "_need_vtep"},
        ]
    )
    assert [error_code(r) for r in responses] == ["unknown-method"] * 3


@pytest.mark.parametrize(
    "line",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'"hello"',
        b"42",
        b"null",
        b'{"id": 3}',
        b'{"id": 4, "method": ["hello"]}',  # unhashable method once crashed the server
        b'{"id": 5, "method": {"a": 1}}',
        b'{"id": 6, "method": 7}',
        b"[" * 100_000,  # nesting deep enough to exhaust the recursion limit
    ],
    ids=[
        "truncated",
        "not-utf8",
        "array",
        "string",
        "number",
        "null",
        "no-method",
        "list-method",
        "dict-method",
        "int-method",
        "deep-nesting",
    ],
)
def test_malformed_line_is_a_protocol_error_and_the_server_goes_on(line: bytes) -> None:
    how, responses = run_server([line, HELLO])
    assert how == "eof"
    assert len(responses) == 2, responses
    bad, good = responses
    assert bad["id"] is None and error_code(bad) == "protocol"
    assert "not a request" in bad["error"]["message"]
    assert len(bad["error"]["message"]) < 200  # the echo of the line is cut short
    assert good["id"] == 1 and "result" in good


def test_blank_lines_are_ignored() -> None:
    how, responses = run_server([b"", b"   ", b"\r", HELLO])
    assert how == "eof" and [r["id"] for r in responses] == [1]


def test_params_that_do_not_fit_are_invalid() -> None:
    _, responses = run_server(
        [
            {"id": 1, "method": "hello", "params": {"protocol": 1, "extra": True}},  # **_ takes it
            {"id": 2, "method": "create_network", "params": {"name": "n"}},
            {"id": 3, "method": "create_network", "params": [1, 2]},
            {"id": 4, "method": "counters", "params": {"verbose": True}},
        ]
    )
    assert "result" in responses[0]
    assert [error_code(r) for r in responses[1:]] == ["invalid"] * 3
    assert [r["id"] for r in responses] == [1, 2, 3, 4]


def test_shutdown_answers_and_stops_reading() -> None:
    how, responses = run_server([HELLO, {"id": 9, "method": "shutdown"}, {"id": 10, **HELLO}])
    assert how == "shutdown"
    assert responses[-1] == {"id": 9, "result": {"bye": True}}
    assert [r["id"] for r in responses] == [1, 9]


def test_eof_without_any_request() -> None:
    assert run_server([]) == ("eof", [])


def test_a_vanished_controller_does_not_stop_the_server() -> None:
    out = io.BytesIO()
    out.close()  # every write now raises ValueError, as a closed pipe raises OSError
    infile = io.BytesIO(encode(HELLO) * 3)
    server = RpcServer(Agent(), infile, out)
    assert server.serve() == "eof"


class _BrokenPipe(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_pipe_does_not_stop_the_server() -> None:
    server = RpcServer(Agent(), io.BytesIO(encode(HELLO) * 2), _BrokenPipe())  # type: ignore[arg-type]
    assert server.serve() == "eof"


class _FakeAgent:
    """Stands in for Agent to reach the generic error paths."""

    @rpc()
    def hello(self, protocol: int) -> Dict[str, Any]:
        raise RuntimeError("disk on fire")

    @rpc()
    def counters(self) -> Dict[str, Any]:
        raise AgentError("no VTEP yet", "state")

    def unmarked(self) -> Dict[str, Any]:
        return {"reachable": True}

    @rpc(slow=True)
    def ping(self, **params: Any) -> Dict[str, Any]:
        return {"sent": params["count"], "thread": threading.current_thread().name}


def test_error_codes_from_the_agent() -> None:
    _, responses = run_server(
        [
            {"id": 1, "method": "hello", "params": {"protocol": 1}},
            {"id": 2, "method": "counters"},
            {"id": 3, "method": "ping", "params": {"count": 4}},
            {"id": 4, "method": "unmarked"},
        ],
        agent=_FakeAgent(),
    )
    r = by_id(responses)
    assert error_code(r[1]) == "RuntimeError"
    assert r[1]["error"]["message"] == "disk on fire"
    assert "RuntimeError" in r[1]["error"]["trace"]
    assert r[2]["error"] == {"code": "state", "message": "no VTEP yet"}
    # Probes run in the pool, not on the reading thread.
    assert r[3]["result"]["sent"] == 4
    assert r[3]["result"]["thread"].startswith("probe")
    # Only methods marked with @rpc are reachable from the controller.
    assert error_code(r[4]) == "unknown-method"


# -- methods that need no root ----------------------------------------------------------------------


@pytest.mark.parametrize("vni", [-1, 0x1000000, 2**40])
def test_create_network_rejects_a_vni_out_of_range(vni: int) -> None:
    req = {
        "id": "c1",
        "method": "create_network",
        "params": {"name": "blue", "vni": vni, "subnet": "10.1.0.0/24"},
    }
    _, [resp] = run_server([req])
    assert resp["id"] == "c1"
    assert error_code(resp) == "invalid"
    assert str(vni) in resp["error"]["message"] and "16777215" in resp["error"]["message"]


def test_create_network_then_counters() -> None:
    net = {"name": "blue", "vni": 100, "subnet": "10.1.0.0/24"}
    _, responses = run_server(
        [
            {"id": 1, "method": "create_network", "params": net},
            {"id": 2, "method": "create_network", "params": net},  # idempotent
            {"id": 3, "method": "create_network", "params": {**net, "vni": 101}},
            {
                "id": 4,
                "method": "create_network",
                "params": {"name": "red", "vni": 0xFFFFFF, "subnet": "10.2.0.0/24", "mtu": 1400},
            },
            {
                "id": 5,
                "method": "create_network",
                "params": {"name": "bad", "vni": 5, "subnet": "not-a-subnet"},
            },
            {"id": 6, "method": "counters"},
        ]
    )
    r = by_id(responses)
    assert r[1]["result"] == r[2]["result"] == {"name": "blue", "vni": 100}
    assert error_code(r[3]) == "conflict" and "blue" in r[3]["error"]["message"]
    assert r[4]["result"] == {"name": "red", "vni": 0xFFFFFF}
    assert "error" in r[5] and "not-a-subnet" in r[5]["error"]["message"]
    snap = r[6]["result"]
    assert set(snap["vnis"]) == {"100", "16777215"}
    assert snap["drops"] == {} and snap["io_errors"] == {}


def test_set_members_and_mappings_without_a_vtep() -> None:
    _, responses = run_server(
        [
            {"id": 1, "method": "set_members", "params": {"vteps": ["192.0.2.1", "2001:db8::1"]}},
            {"id": 2, "method": "set_members", "params": {"vteps": ["192.0.2.300"]}},
            {"id": 3, "method": "set_mappings", "params": {"vni": 77, "entries": []}},
            # Remote checksum offload only ever for members: the stranger is left out.
            {"id": 4, "method": "set_members", "params": {
                "vteps": ["192.0.2.1", "192.0.2.2"], "remcsum": ["192.0.2.2", "192.0.2.9"]}},
        ]
    )
    r = by_id(responses)
    assert r[1]["result"] == {"members": 2, "remcsum": []}
    assert r[4]["result"] == {"members": 2, "remcsum": ["192.0.2.2"]}
    assert "error" in r[2] and "192.0.2.300" in r[2]["error"]["message"]
    assert "error" in r[3] and "77" in r[3]["error"]["message"]


def test_methods_on_missing_endpoints_are_invalid() -> None:
    _, responses = run_server(
        [
            {"id": 1, "method": "ping", "params": {"endpoint": "ghost", "dst": "10.0.0.1"}},
            {"id": 2, "method": "tcp_transfer", "params": {"endpoint": "ghost", "dst": "10.0.0.1"}},
            {"id": 3, "method": "remove_endpoint", "params": {"name": "ghost"}},
            {
                "id": 4,
                "method": "add_endpoint",
                "params": {
                    "network": "n",
                    "name": "e",
                    "ip": "10.0.0.2",
                    "mac": "02:00:00:00:00:01",
                },
            },
        ]
    )
    r = by_id(responses)
    assert error_code(r[1]) == error_code(r[2]) == "invalid"
    assert "ghost" in r[1]["error"]["message"]
    assert r[3]["result"] == {"removed": False}
    assert error_code(r[4]) == "state"  # configure first: nothing was touched on the host


# -- real streams -----------------------------------------------------------------------------------


def read_line(stream: Any, timeout: float = 5.0) -> bytes:
    """One line from a pipe, or fail after ``timeout`` (never hang the suite)."""
    buf = b""
    fd = stream.fileno()
    while not buf.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            pytest.fail(f"no complete line within {timeout} s (got {buf!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            pytest.fail(f"stream closed mid-line (got {buf!r})")
        buf += chunk
    return buf


def test_serve_over_os_pipes() -> None:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    with ExitStack() as stack:
        infile = stack.enter_context(open(in_r, "rb"))
        outfile = stack.enter_context(open(out_w, "wb"))
        to_server = stack.enter_context(open(in_w, "wb", buffering=0))
        reply = stack.enter_context(open(out_r, "rb", buffering=0))
        server = RpcServer(Agent(), infile, outfile)
        ended: List[str] = []
        thread = threading.Thread(target=lambda: ended.append(server.serve()), daemon=True)
        thread.start()
        to_server.write(encode(HELLO))
        assert json.loads(read_line(reply))["result"]["protocol"] == 1
        to_server.write(encode({"id": 2, "method": "counters"}))
        assert json.loads(read_line(reply))["id"] == 2
        to_server.close()  # the controller goes away
        thread.join(timeout=5)
        assert not thread.is_alive()
        assert ended == ["eof"]


# -- the agent as a process -------------------------------------------------------------------------


@pytest.fixture
def spawn() -> Iterator[Any]:
    procs: List[subprocess.Popen] = []  # type: ignore[type-arg]

    def start(args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None) -> Any:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def talk_then_hang_up(proc: Any) -> None:
    """hello, an unknown method, then EOF: the agent must answer both and exit 0 by itself."""
    proc.stdin.write(encode(HELLO))
    proc.stdin.flush()
    hello = json.loads(read_line(proc.stdout))
    assert hello["id"] == 1, hello
    result = hello["result"]
    assert result["protocol"] == 1 and result["pid"] == proc.pid
    assert set(result["capabilities"]) >= CAPABILITY_KEYS
    assert all(isinstance(result["capabilities"][k], bool) for k in CAPABILITY_KEYS - {"python"})
    assert isinstance(result["capabilities"]["python"], str)

    proc.stdin.write(encode({"id": 2, "method": "nope"}))
    proc.stdin.flush()
    assert error_code(json.loads(read_line(proc.stdout))) == "unknown-method"

    proc.stdin.close()  # the controller is gone
    try:
        rc = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("the agent did not exit within 5 s of its stdin closing")
    assert rc == 0, proc.stderr.read().decode(errors="replace")
    assert proc.stdout.read() == b""  # nothing but protocol lines on stdout


def test_agent_module_exits_when_the_controller_goes_away(spawn: Any) -> None:
    env = {**os.environ, "PYTHONPATH": str(AGENTS_DIR)}
    talk_then_hang_up(spawn(["-m", "overlay_agent"], cwd=AGENTS_DIR, env=env))


def test_agent_module_exits_on_shutdown(spawn: Any) -> None:
    proc = spawn(["-m", "overlay_agent"], cwd=AGENTS_DIR)
    out, err = proc.communicate(encode({"id": 1, "method": "shutdown"}) + encode(HELLO), timeout=5)
    assert proc.returncode == 0, err.decode(errors="replace")
    assert [json.loads(x) for x in out.splitlines()] == [{"id": 1, "result": {"bye": True}}]


def test_agent_zipapp_runs_with_the_stdlib_alone(spawn: Any, tmp_path: Path) -> None:
    from pytest_overlay.deploy import build_agent

    pyz = build_agent(tmp_path)
    assert pyz == tmp_path / "agent.pyz"
    with zipfile.ZipFile(pyz) as zf:
        names = zf.namelist()
    assert "overlay_agent/__main__.py" in names and "__main__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # -I -S: no site-packages, no PYTHONPATH, no current directory: as on a bare remote host.
    talk_then_hang_up(spawn(["-I", "-S", str(pyz)], cwd=tmp_path))


def test_agent_archive_is_reproducible(tmp_path: Path) -> None:
    """The same sources give the same bytes: hosts allow-list the archive by its SHA-256."""
    import hashlib
    import zipfile

    from pytest_overlay.deploy import agent_archive, agent_digest, build_agent

    first = agent_archive()
    assert agent_archive() == first
    assert agent_digest() == hashlib.sha256(first).hexdigest()
    path = build_agent(tmp_path)
    assert path.read_bytes() == first
    assert (path.stat().st_mode & 0o777) == 0o600
    names = zipfile.ZipFile(path).namelist()
    assert names == sorted(names) and "__main__.py" in names
    assert "overlay_agent/core/vtep.py" in names
    assert not any("__pycache__" in n for n in names)
