"""``pytest-overlay`` command: small utilities around the plugin.

  pytest-overlay schema            print the JSON report's schema (docs/report-schema.json)
  pytest-overlay inventory-schema  print the inventory's schema (docs/inventory-schema.json)
  pytest-overlay cleanup [PREFIX]  remove what a killed run left behind (namespaces, processes,
                                   temp files), for one prefix or every ``ov??????`` run
  pytest-overlay leftovers         list such leftovers without removing them
  pytest-overlay agent-digest      SHA-256 of the agent archive (for a host's allow-list)
  pytest-overlay lab up|exec|down  a lab fleet with real sshds, to provision with Ansible
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
from typing import Dict, Iterable, List, Optional

from pytest_overlay.naming import ANY_PREFIX_RE, check_prefix, kill_processes, namespaces, processes


def leftovers(prefix: Optional[str] = None) -> Dict[str, Dict[str, List[str]]]:
    """What runs left behind, by prefix: namespaces, processes (pids) and temp paths."""
    found: Dict[str, Dict[str, List[str]]] = {}
    prefixes = {prefix} if prefix else set()
    if not prefix:
        for n in namespaces(""):
            m = ANY_PREFIX_RE.match(n)
            if m:
                prefixes.add(m.group(1))
        for path in glob.glob(os.path.join(tempfile.gettempdir(), "ov??????-*")):
            m = ANY_PREFIX_RE.match(os.path.basename(path))
            if m:
                prefixes.add(m.group(1))
    for p in sorted(prefixes):
        entry = {
            "namespaces": namespaces(p),
            "processes": [str(pid) for pid in processes(p)],
            "files": sorted(glob.glob(os.path.join(tempfile.gettempdir(), f"{p}-*"))),
        }
        if any(entry.values()):
            found[p] = entry
    return found


def cleanup(prefix: Optional[str] = None, spare: Iterable[int] = ()) -> Dict[str, Dict[str, List[str]]]:
    """Remove leftovers; processes in ``spare`` (and this one) are not killed."""
    from overlay_agent.io import netns

    found = leftovers(prefix)
    for p, entry in found.items():
        kill_processes(p, spare=spare)
        for name in entry["namespaces"]:
            netns.delete(name)
        for path in entry["files"]:
            shutil.rmtree(path, ignore_errors=True)
    return found


def _lab(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pytest_overlay.errors import OverlayError
    from pytest_overlay.lab import fleet

    directory = Path(args.dir)
    try:
        if args.lab_cmd == "up":
            state = fleet.up(directory, args.hosts)
            json.dump(state, sys.stdout, indent=2)
            sys.stdout.write(f"\nnext: pytest-overlay lab exec {directory} -- ansible-playbook "
                             f"-i {directory}/inventory.ini ansible/prepare.yml "
                             f"-e @{directory}/prepare-vars.json\n")
            return 0
        if args.lab_cmd == "exec":
            argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            return fleet.exec_in(directory, argv)
        json.dump(fleet.down(directory), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    except OverlayError as e:
        sys.stderr.write(f"pytest-overlay lab {args.lab_cmd}: {e}\n")
        return 2


def _reports(args: argparse.Namespace) -> int:
    """``show REPORT`` and ``diff OLD NEW``: the terminal's width and colours, like pytest's."""
    from pathlib import Path

    from pytest_overlay.errors import OverlayError
    from pytest_overlay.report import diff, render, render_html

    color = sys.stdout.isatty() if args.color == "auto" else args.color == "yes"
    width = shutil.get_terminal_size((100, 24)).columns
    try:
        if args.cmd == "show":
            report = diff.load(Path(args.report))
            if args.html:
                Path(args.html).write_text(render_html(report))
                sys.stdout.write(f"{args.html}: {len(report.results)} results\n")
                return 0
            sys.stdout.write(render(report, width=width, color=color))
            return 0
        old, new = diff.load(Path(args.old)), diff.load(Path(args.new))
    except OverlayError as e:
        sys.stderr.write(f"pytest-overlay {args.cmd}: {e.message}; fix: {e.hint}\n")
        return 2
    groups = diff.compare(old, new)
    sys.stdout.write(diff.render(old, new, groups, width=width, color=color))
    return 1 if diff.broke(groups) else 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-overlay")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("schema", help="print the JSON report schema")
    sub.add_parser("inventory-schema", help="print the inventory schema")
    c = sub.add_parser("cleanup", help="remove leftovers of killed runs")
    c.add_argument("prefix", nargs="?")
    sub.add_parser("leftovers", help="list leftovers of killed runs")
    lab = sub.add_parser("lab", help="a lab fleet of namespace hosts with real sshds")
    lab_sub = lab.add_subparsers(dest="lab_cmd", required=True)
    lu = lab_sub.add_parser("up", help="build it; write inventories and keys into DIR")
    lu.add_argument("dir")
    lu.add_argument("--hosts", type=int, default=3)
    le = lab_sub.add_parser("exec", help="run a command in the fleet's controller namespace")
    le.add_argument("dir")
    le.add_argument("argv", nargs=argparse.REMAINDER)
    ld = lab_sub.add_parser("down", help="remove the fleet and the files up wrote")
    ld.add_argument("dir")
    sh = sub.add_parser("show", help="print a saved report's tables (--overlay-report's file)")
    sh.add_argument("report")
    sh.add_argument("--color", choices=["auto", "yes", "no"], default="auto")
    sh.add_argument("--html", metavar="FILE", help="write the tables as one HTML page to FILE")
    df = sub.add_parser("diff", help="what broke, was fixed or still fails between two reports "
                                     "(exit 1 if something broke)")
    df.add_argument("old")
    df.add_argument("new")
    df.add_argument("--color", choices=["auto", "yes", "no"], default="auto")
    d = sub.add_parser("agent-digest",
                       help="SHA-256 of the agent archive this controller deploys (for allow-lists)")
    d.add_argument("--control-plane", choices=["raft", "static"], default="raft",
                   help="the run's --overlay-control-plane (raft bundles pysyncobj)")
    args = parser.parse_args(argv)
    if args.cmd == "schema":
        from pytest_overlay.report import report_schema

        json.dump(report_schema(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.cmd == "inventory-schema":
        from pytest_overlay.inventory import inventory_schema

        json.dump(inventory_schema(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.cmd == "lab":
        return _lab(args)
    if args.cmd in ("show", "diff"):
        return _reports(args)
    if args.cmd == "agent-digest":
        from pytest_overlay.deploy import agent_digest, bundle_for

        sys.stdout.write(agent_digest(bundle_for(args.control_plane)) + "\n")
        return 0
    prefix = getattr(args, "prefix", None)
    if prefix:
        try:
            check_prefix(prefix)
        except ValueError as e:
            parser.error(str(e))
    found = cleanup(prefix) if args.cmd == "cleanup" else leftovers(prefix)
    json.dump(found, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
