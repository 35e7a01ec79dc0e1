"""``--overlay-evidence=DIR``: per failing pair, save what explains the failure.

For each failing result of a check the collector asks both hosts' agents for their view of the
path to the other (``ip route get`` with any cached path MTU, interface MTUs and counters,
neighbours, the nftables ruleset, UDP counters, VTEP counters), captures the underlay frames
between the two while the pair is probed once more, and writes::

    DIR/<check>/<src>--<dst>[vni=N]/result.json        the judged result
    DIR/<check>/<src>--<dst>[vni=N]/<host>.txt         one host's snapshot, readable
    DIR/<check>/<src>--<dst>[vni=N]/<host>.json        the same, for tools
    DIR/<check>/<src>--<dst>[vni=N]/<host>-underlay.pcap   frames to/from the peer (tshark -r)

Any check can call it: ``results = await evidence.after_check(session, NAME, results)`` (it does
nothing unless the run was given a directory), optionally with a ``reprobe(src, dst)`` coroutine
that sends that check's own probe while the capture runs (the default sends VXLAN port probes
and, for endpoint pairs, an ICMP echo through the overlay). Collection never fails a check:
its own errors are written into the directory instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import weakref
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, FrozenSet, List, Optional, Set

from pytest_overlay.errors import ConfigError
from pytest_overlay.models import CheckResult

Reprobe = Callable[[CheckResult], Awaitable[None]]
#: at most this many failing results get evidence per check (a broken fabric fails every pair)
MAX_PAIRS = 32
CAPTURE_SETTLE_S = 0.3
#: failing pairs collected at once
PARALLEL = 8

_dirs: weakref.WeakKeyDictionary[Any, Path] = weakref.WeakKeyDictionary()


def directory_from_option(value: Optional[str]) -> Optional[Path]:
    """The ``--overlay-evidence`` directory, checked (created later, when the run starts)."""
    if not value:
        return None
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--overlay-evidence={value}: exists and is not a directory",
                          "give a directory (it is created if missing)")
    return path


def attach(session: Any, directory: Path) -> None:
    """Collect evidence for ``session``'s failing pairs into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _dirs[session] = directory


def directory_of(session: Any) -> Optional[Path]:
    return _dirs.get(session)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=\[\]-]+", "-", name.replace("->", "--"))


def _host(session: Any, label: Optional[str]) -> Optional[Any]:
    if not label:
        return None
    name = label.split("/")[0]
    st = session.hosts.get(name)
    return st if st is not None and st.ok else None


def _endpoint(session: Any, label: Optional[str]) -> Optional[Any]:
    for ep in session.plan.endpoints:
        if ep.label == label:
            return ep
    return None


async def _default_reprobe(session: Any, result: CheckResult) -> None:
    src, dst = _host(session, result.src), _host(session, result.dst)
    if src is None or dst is None:
        return
    client = session.client(src.plan.name)
    await client.call("send_probes", dst=dst.plan.underlay, probe_id=secrets.token_hex(4),
                      kind="vxlan", port=session.plan.vxlan_port, count=3)
    a, b = _endpoint(session, result.src), _endpoint(session, result.dst)
    if a is not None and b is not None:
        await client.call("ping", endpoint=a.name, dst=b.ip, count=2, size=1400, timeout=0.5,
                          dont_fragment=True, rpc_timeout=10)


def _text(snap: Dict[str, Any]) -> str:
    parts = []
    for key, value in snap.items():
        body = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)
        parts.append(f"===== {key} =====\n{body.rstrip()}\n")
    return "\n".join(parts)


async def collect(session: Any, check: str, result: CheckResult, directory: Path,
                  reprobe: Optional[Reprobe] = None) -> Path:
    """Write the evidence for one failing ``result``; returns its folder."""
    folder = directory / _safe(check) / _safe(result.test_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(result.model_dump(mode="json"), indent=2))
    src, dst = _host(session, result.src), _host(session, result.dst)
    sides = [(st, peer) for st, peer in ((src, dst), (dst, src)) if st is not None and peer is not None]
    notes: List[str] = []
    if not sides:
        notes.append("no live host pair to ask: see result.json")

    async def start(st: Any, peer: Any) -> None:
        await session.client(st.plan.name).call("evidence_capture_start", peer=peer.plan.underlay)

    async def finish(st: Any, peer: Any) -> None:
        client = session.client(st.plan.name)
        cap = await client.call("evidence_capture_stop", peer=peer.plan.underlay)
        if cap.get("pcap_b64"):
            (folder / f"{st.plan.name}-underlay.pcap").write_bytes(base64.b64decode(cap["pcap_b64"]))
        snap = await client.call("evidence_snapshot", peer=peer.plan.underlay, rpc_timeout=60)
        snap["underlay_frames_captured"] = cap.get("frames", 0)
        snap["underlay_frames_not_kept"] = cap.get("dropped", 0)  # past the capture's limits
        (folder / f"{st.plan.name}.json").write_text(json.dumps(snap, indent=2, sort_keys=True))
        (folder / f"{st.plan.name}.txt").write_text(_text(snap))

    for r in await asyncio.gather(*(start(s, p) for s, p in sides), return_exceptions=True):
        if isinstance(r, BaseException):
            notes.append(f"capture start: {r}")
    try:
        if sides:
            await (reprobe(result) if reprobe is not None else _default_reprobe(session, result))
    except Exception as e:  # the pair is failing: a failing re-probe is expected, not fatal
        notes.append(f"re-probe: {e}")
    await asyncio.sleep(CAPTURE_SETTLE_S)
    for r in await asyncio.gather(*(finish(s, p) for s, p in sides), return_exceptions=True):
        if isinstance(r, BaseException):
            notes.append(f"snapshot: {r}")
    if notes:
        (folder / "notes.txt").write_text("\n".join(notes) + "\n")
    return folder


async def after_check(session: Any, check: str, results: List[CheckResult],
                      reprobe: Optional[Reprobe] = None) -> List[CheckResult]:
    """Collect evidence for the failing ``results`` when the run has an evidence directory.

    Returns the results, each failing one with ``details["evidence"]`` naming its folder. Pairs
    are collected in parallel waves; two collections on the same two hosts never overlap (their
    captures would be the same).
    """
    directory = directory_of(session)
    if directory is None:
        return results
    out: List[CheckResult] = list(results)
    pending = [i for i, r in enumerate(results) if r.outcome == "fail"][:MAX_PAIRS]

    async def one(i: int) -> None:
        r = results[i]
        try:
            folder = await collect(session, check, r, directory, reprobe)
        except Exception as e:  # evidence is a help, never a reason to lose a result
            out[i] = r.model_copy(update={"details": {**r.details, "evidence_error": str(e)}})
            return
        out[i] = r.model_copy(update={"details": {**r.details, "evidence": str(folder)}})

    while pending:
        wave: List[int] = []
        busy: Set[FrozenSet[str]] = set()
        for i in pending:
            key = frozenset(str(x).split("/")[0] for x in (results[i].src, results[i].dst))
            if key not in busy and len(wave) < PARALLEL:
                wave.append(i)
                busy.add(key)
        await asyncio.gather(*(one(i) for i in wave))
        pending = [i for i in pending if i not in wave]
    return out
