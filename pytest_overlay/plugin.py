"""pytest entry point: options (group "overlay") and hook wiring. The logic lives elsewhere."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, List, Optional

import pytest

from pytest_overlay.errors import ConfigError

_KEY = pytest.StashKey["OverlayPlugin"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("overlay", "overlay network (VXLAN) tests")
    g.addoption("--overlay-local", metavar="N|PATH",
                help="build N hosts (2..250), or the lab topology file PATH (YAML: segments, "
                     "routers, faults), as network namespaces on one machine (needs root)")
    g.addoption("--overlay-hosts", metavar="FILE",
                help="real hosts over SSH, from an inventory file (see examples/inventory.yaml)")
    g.addoption("--overlay-accept-new-hostkeys", action="store_true",
                help="accept and record host keys not yet in known_hosts (changed keys are "
                     "always refused); the report lists every key accepted so")
    g.addoption("--overlay-ssh-netns", metavar="NAME",
                help="open the SSH connections inside local network namespace NAME (labs)")
    g.addoption("--overlay-audit", action="store_true",
                help="run the built-in audit (reachability of every endpoint pair); "
                     "with no test paths given, only the audit runs")
    g.addoption("--overlay-group", metavar="GROUP",
                help="with an Ansible inventory as --overlay-hosts: use the hosts of GROUP")
    g.addoption("--overlay-report", metavar="FILE", help="write the JSON report to FILE")
    g.addoption("--overlay-prefix", metavar="PREFIX",
                help="run prefix ('ov' + 6 hex digits) carried by every name the run makes; "
                     "random by default")
    g.addoption("--overlay-vni", type=int, default=4096, help="VNI of the default network (4096)")
    g.addoption("--overlay-subnet", default="10.10.0.0/16",
                help="inner subnet of the default network (10.10.0.0/16)")
    g.addoption("--overlay-mtu", type=int, default=1450,
                help="MTU of the default network's endpoints (1450)")
    g.addoption("--overlay-control-plane", default="raft", metavar="raft|static",
                help="how agents learn the mappings: raft (replicated among the agents, "
                     "authenticated; default) or static (pushed by the controller)")
    g.addoption("--overlay-raft-port", type=int, default=7946, metavar="PORT",
                help="TCP port of the agents' Raft on their underlay address (7946)")
    g.addoption("--overlay-ports", metavar="SPEC",
                help="extra underlay ports the ports check probes per host pair: a comma list "
                     "like 2377/tcp,7946/tcp,7946/udp, and presets: swarm (= those three), "
                     "kubernetes, flannel, calico, cilium (the VXLAN port is always probed)")
    g.addoption("--overlay-evidence", metavar="DIR",
                help="save, per failing pair, what explains it (routes and cached path MTU, "
                     "interface MTUs, counters, firewall rules, an underlay capture) into DIR")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("overlay_local") is None and config.getoption("overlay_hosts") is None:
        if config.getoption("overlay_audit"):
            raise pytest.UsageError("--overlay-audit needs hosts: give --overlay-local=N "
                                    "or --overlay-hosts=FILE")
        return
    from pytest_overlay.evidence import directory_from_option
    from pytest_overlay.options import run_from_options

    try:
        evidence_dir = directory_from_option(config.getoption("overlay_evidence"))
        run = run_from_options(config)
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None
    run.evidence_dir = evidence_dir
    plugin = OverlayPlugin(config, run)
    config.stash[_KEY] = plugin
    config.pluginmanager.register(plugin, "overlay-run")


class OverlayPlugin:
    def __init__(self, config: pytest.Config, run: Any) -> None:
        self.config = config
        self.run = run
        self.audit = bool(config.getoption("overlay_audit"))
        report = config.getoption("overlay_report")
        self.report_path: Optional[Path] = Path(report) if report else None
        self._old_term: Any = None
        if hasattr(signal, "SIGTERM"):
            try:
                self._old_term = signal.signal(signal.SIGTERM, self._on_term)
            except ValueError:  # not the main thread
                self._old_term = None

    def _on_term(self, signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    def _audit_only(self) -> bool:
        source = getattr(self.config, "args_source", None)
        return self.audit and source is not None and source != pytest.Config.ArgsSource.ARGS

    @pytest.hookimpl(tryfirst=True)
    def pytest_ignore_collect(self, collection_path: Path) -> Optional[bool]:
        return True if self._audit_only() else None

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, items: List[pytest.Item]) -> None:
        if self.audit:
            from pytest_overlay.checks import AUDIT, BEFORE_TESTS
            from pytest_overlay.items import audit_items

            audit = audit_items(session, self.run, AUDIT)
            # The underlay comes before any overlay traffic, the user's tests included.
            first = [i for i in audit if getattr(i, "check", None) in BEFORE_TESTS]
            items[:0] = first
            items.extend(i for i in audit if i not in first)

    @pytest.fixture(scope="session")
    def overlay(self) -> Any:
        """Name: overlay / Scope: session / Depends: --overlay-local or --overlay-hosts.

        The running overlay (:class:`~pytest_overlay.runner.OverlayRun`), started on first use.
        """
        self.run.start()
        if self.run.start_error:
            pytest.fail(f"the overlay did not start: {self.run.start_error}", pytrace=False)
        return self.run

    @pytest.fixture
    def overlay_pair(self, request: pytest.FixtureRequest) -> Any:
        """Name: overlay_pair / Scope: function (one test per ordered pair) / Depends: overlay.

        A :class:`~pytest_overlay.pairs.Pair` with ``ping()`` and ``tcp()``; test ids name the
        pair, ``h1->h2[vni=4096]``.
        """
        request.getfixturevalue("overlay")
        return request.param

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "overlay_pair" in metafunc.fixturenames:
            pairs = self.run.pairs()
            metafunc.parametrize("overlay_pair", pairs, ids=[p.id for p in pairs], indirect=True)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        report = self.run.teardown()
        if self._old_term is not None:
            signal.signal(signal.SIGTERM, self._old_term)
        if report is not None and self.report_path is not None:
            from pytest_overlay.report import write_json

            write_json(report, self.report_path)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        report = self.run.report
        if report is None:
            return
        from pytest_overlay.report import render

        tw = terminalreporter._tw
        terminalreporter.section("overlay")
        terminalreporter.write(render(report, width=tw.fullwidth, color=tw.hasmarkup))
        if self.report_path is not None:
            terminalreporter.write_line(f"overlay report: {self.report_path}")
