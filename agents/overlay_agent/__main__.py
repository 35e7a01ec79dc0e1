"""Entry point: ``python3 -m overlay_agent`` or ``python3 agent.pyz``.

Options: ``--netns NAME`` enters a network namespace first (local mode). The agent then speaks
JSON lines on stdin/stdout and removes everything it made when stdin closes, on ``shutdown``, or
on SIGTERM/SIGINT/SIGHUP.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any, List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="overlay-agent")
    parser.add_argument("--netns", help="enter this network namespace before anything else")
    args = parser.parse_args(argv)

    # The protocol owns stdout; anything else that writes there (a child, a stray print) goes
    # to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    if args.netns:
        from overlay_agent.io import netns

        netns.enter(args.netns)

    from overlay_agent.io import heap

    heap.keep()  # fewer page faults per TSO frame; see io/heap.py

    from overlay_agent.agent import Agent
    from overlay_agent.rpc import RpcServer

    agent = Agent()

    def on_signal(signum: int, _frame: Any) -> None:
        agent.cleanup()
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    server = RpcServer(agent, sys.stdin.buffer, out)
    try:
        server.serve()
    finally:
        agent.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
