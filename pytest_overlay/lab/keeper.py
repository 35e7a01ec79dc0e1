"""The lab keeper: a watchdog that removes a run's leftovers if the controller dies.

Started by the controller in its own session with a pipe on stdin. When the pipe closes - the
controller finished, or was killed with SIGKILL and could not clean up - the keeper removes every
namespace, process and temp file carrying the run prefix, then exits. Normally the controller has
already removed everything and the keeper finds nothing to do.

    python -m pytest_overlay.lab.keeper PREFIX CONTROLLER_PID
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import List, Optional

from pytest_overlay.naming import check_prefix


def start(prefix: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest_overlay.lab.keeper", check_prefix(prefix), str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Close the keeper's pipe and wait for it: it sweeps once more, then exits."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    prefix = check_prefix(args[0])
    controller = int(args[1]) if len(args) > 1 else None
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sys.stdin.buffer.read()  # returns at EOF: the controller is gone
    from pytest_overlay.cli import cleanup

    # The controller may still be alive (a normal end): it is never the keeper's to kill.
    cleanup(prefix, spare=[controller] if controller else [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
