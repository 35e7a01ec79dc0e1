"""One overlay run for one pytest session: build, check (lazily, once), report, tear down.

Nothing here knows pytest's internals; :mod:`pytest_overlay.plugin` calls it from hooks. Tear-down
is idempotent and runs on success, failure, Ctrl-C (pytest's session finish), SIGTERM and
interpreter exit, so a run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from pytest_overlay import __version__, checks
from pytest_overlay.aio import LoopThread
from pytest_overlay.checks import reachability
from pytest_overlay.errors import OverlayError
from pytest_overlay.lab import neighbours
from pytest_overlay.lab.netlab import NetLab
from pytest_overlay.lab.topology import LabTopology
from pytest_overlay.models import CheckResult, HostPlan, NetworkSpec, Report, RunPlan
from pytest_overlay.naming import kill_processes, new_prefix
from pytest_overlay.session import OverlaySession, one_endpoint_per_host

#: path-MTU flows per pair in a lab with multipath routes (two legs: 8 flows miss one leg in
#: 1 of 128 pairs by chance; the lab's fixed hash seed makes it the same every run)
ECMP_LAB_FLOWS = 8


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class OverlayRun:
    def __init__(self, plan: RunPlan, mode: str, prefix: Optional[str] = None,
                 topology: Optional[LabTopology] = None, control_plane: str = "raft") -> None:
        self.plan = plan
        self.mode = mode
        self.control_plane = control_plane
        self.raft_port = 7946  # --overlay-raft-port
        self.extra_ports: List[Tuple[int, str]] = []  # --overlay-ports
        self.prefix = prefix or new_prefix()
        self.topology = topology
        self.started_at = _now()
        self.timings: Dict[str, float] = {}
        self.results: Dict[str, Dict[str, CheckResult]] = {}
        self.report: Optional[Report] = None
        self.start_error: Optional[str] = None
        self._loop: Optional[LoopThread] = None
        self._session: Optional[OverlaySession] = None
        self._lab: Optional[NetLab] = None
        self._workdir: Optional[Path] = None
        self._keeper: Any = None
        self._transport: Any = None
        self.inventory: Any = None
        self.ssh_options: Dict[str, Any] = {}
        #: ``--overlay-evidence``: where failing pairs' evidence goes (None: not collected)
        self.evidence_dir: Optional[Path] = None
        self._started = False
        self._finished = False
        self._lock = threading.Lock()
        atexit.register(self.teardown)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def local(cls, topology: LabTopology, network: NetworkSpec, prefix: Optional[str] = None,
              control_plane: str = "raft") -> OverlayRun:
        hosts = [HostPlan(name=h.name, underlay=h.address, transport="netns") for h in topology.hosts]
        plan = RunPlan(hosts=hosts, networks=[network],
                       endpoints=one_endpoint_per_host(hosts, network),
                       pmtu_flows=ECMP_LAB_FLOWS if topology.ecmp else 1)
        # A lab that would overflow the kernel's neighbour table is refused here (LabError, with
        # the numbers and the fix), before anything is built, not reported as failed pairs.
        neighbours.check(plan, neighbours.kernel_room())
        return cls(plan, "local", prefix=prefix, topology=topology, control_plane=control_plane)

    @classmethod
    def from_inventory(cls, inventory: Any, prefix: Optional[str] = None, accept_new: bool = False,
                       netns: Optional[str] = None) -> OverlayRun:
        """Remote mode: the hosts of an :class:`~pytest_overlay.inventory.Inventory`, over SSH."""
        run = cls(inventory.to_plan(), "ssh", prefix=prefix)
        run.inventory = inventory
        run.ssh_options = {"accept_new": accept_new, "netns": netns}
        return run

    def test_ids(self, check: str) -> List[str]:
        return list(checks.get(check).test_ids(self.plan))

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Build the lab and start the agents (once). A failure is kept, not raised."""
        with self._lock:
            if self._started:
                return
            self._started = True
            t0 = time.monotonic()
            try:
                self._start()
            except OverlayError as e:
                self.start_error = str(e)
            except Exception as e:
                self.start_error = f"{type(e).__name__}: {e}"
            self.timings["setup_s"] = round(time.monotonic() - t0, 3)

    def _start(self) -> None:
        from pytest_overlay.deploy import build_agent, bundle_for
        from pytest_overlay.lab import keeper

        # First the watchdog: whatever happens to this process from here on, it cleans up.
        self._keeper = keeper.start(self.prefix)
        self._workdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        pyz = build_agent(self._workdir, bundle=bundle_for(self.control_plane))
        self._loop = LoopThread()
        starter: Callable[..., Any]
        if self.mode == "local":
            from pytest_overlay.transport.netns import NetnsTransport

            assert self.topology is not None
            t0 = time.monotonic()
            self._lab = NetLab(self.topology, self.prefix)
            host_ns = self._lab.build()
            self.timings["lab_s"] = round(time.monotonic() - t0, 3)
            transport = NetnsTransport(pyz, self._workdir)

            async def starter(host: HostPlan) -> Any:
                return await transport.start(host.name, host_ns[host.name])
        elif self.mode == "ssh":
            from pytest_overlay.transport.ssh import SshTransport

            ssh = SshTransport(pyz, self.prefix, self.inventory, **self.ssh_options)
            self._transport = ssh

            async def starter(host: HostPlan) -> Any:
                return await ssh.start(host.name)
        else:
            raise OverlayError(f"mode {self.mode!r} is not available yet")
        self._session = OverlaySession(self.plan, self.prefix, starter,
                                       control_plane=self.control_plane)
        self._session.raft_port = self.raft_port
        self._session.extra_ports = list(self.extra_ports)  # --overlay-ports
        if self.evidence_dir is not None:
            from pytest_overlay import evidence

            evidence.attach(self._session, self.evidence_dir)
        self._loop.run(self._session.start(), timeout=120)
        for k, v in self._session.timings.items():
            self.timings[k] = round(v, 3)

    def check(self, name: str) -> Dict[str, CheckResult]:
        """Results of check ``name`` by test id, measured on first use (all pairs at once)."""
        self.start()
        with self._lock:
            if name in self.results:
                return self.results[name]
            t0 = time.monotonic()
            if self.start_error is not None or self._session is None or self._loop is None:
                res = [
                    CheckResult.for_test_id(name, tid, "error",
                                            f"the overlay did not start: {self.start_error}")
                    for tid in self.test_ids(name)
                ]
            else:
                res = self._loop.run(checks.get(name).run(self._session), timeout=600)
            self.timings[f"check_{name}_s"] = round(time.monotonic() - t0, 3)
            by_id = {r.test_id: r for r in res}
            self.results[name] = by_id
            return by_id

    def call(self, host: str, method: str, rpc_timeout: float = 60.0, **params: Any) -> Any:
        """Call an agent from synchronous code (fixtures, user tests)."""
        self.start()
        if self.start_error is not None or self._session is None or self._loop is None:
            raise OverlayError(f"the overlay did not start: {self.start_error}")
        session = self._session
        return self._loop.run(session.client(host).call(method, rpc_timeout=rpc_timeout, **params),
                              timeout=rpc_timeout + 5)

    def pairs(self) -> List[Any]:
        from pytest_overlay.pairs import Pair

        return [Pair(self, a, b, vni) for a, b, vni in reachability.pairs(self.plan)]

    def result(self, check: str, test_id: str) -> CheckResult:
        return self.check(check)[test_id]

    def teardown(self) -> Optional[Report]:
        """Collect counters, stop agents, remove the lab and temp files; build the report."""
        with self._lock:
            if self._finished:
                return self.report
            self._finished = True
            t0 = time.monotonic()
            try:
                if self._session is not None and self._loop is not None:
                    try:
                        self._loop.run(self._session.collect_counters(), timeout=10)
                    except BaseException:
                        pass
                    try:
                        self._loop.run(self._session.close(), timeout=20)
                    except BaseException:
                        pass
                if self._transport is not None and self._loop is not None:
                    try:
                        self._loop.run(self._transport.close(), timeout=10)
                    except BaseException:
                        pass
            finally:
                if self._loop is not None:
                    self._loop.stop()
                kill_processes(self.prefix, spare=[self._keeper.pid if self._keeper else None])
                if self._lab is not None:
                    self._lab.destroy()
                if self._workdir is not None:
                    shutil.rmtree(self._workdir, ignore_errors=True)
                if self._keeper is not None:
                    from pytest_overlay.lab import keeper

                    keeper.stop(self._keeper)
            self.timings["teardown_s"] = round(time.monotonic() - t0, 3)
            self.report = self._build_report()
            atexit.unregister(self.teardown)
            return self.report

    def _build_report(self) -> Report:
        results = [r for by_id in self.results.values() for r in by_id.values()]
        summary = {k: sum(1 for r in results if r.outcome == k) for k in ("pass", "fail", "error", "skip")}
        if self._session is not None:
            hosts = self._session.host_reports()
        else:
            from pytest_overlay.models import HostReport

            hosts = [HostReport(name=h.name, underlay=h.underlay, transport=h.transport,
                                status="error" if self.start_error else "not-started",
                                error=self.start_error) for h in self.plan.hosts]
        return Report(tool_version=__version__, run_prefix=self.prefix, mode=self.mode,  # type: ignore[arg-type]
                      started_at=self.started_at, finished_at=_now(), hosts=hosts,
                      networks=list(self.plan.networks), results=results, summary=summary,
                      timings_s=dict(self.timings))
