"""`python -m proxy.commands.with_parent PARENT_PID ARGV...`: run ARGV as a process that ends with its parent.

On Linux it asks the kernel (prctl(2) `PR_SET_PDEATHSIG`) to send it SIGTERM when its parent dies,
even by SIGKILL, then `exec`s ARGV, which keeps that setting. It does so in a fresh process of its
own, so the parent (which runs threads) needs no `preexec_fn`. If the parent is already gone, it
exits 1 without running ARGV. Elsewhere it just runs ARGV.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def command(parent_pid: int, argv: list[str]) -> list[str]:
    """The command line that runs `argv` (a Python interpreter and its arguments) tied to `parent_pid`."""
    return [sys.executable, "-m", "proxy.commands.with_parent", str(parent_pid), *argv]


def main(args: list[str]) -> int:
    parent, argv = int(args[0]), args[1:]
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the kernel could be told
        return 1
    os.execv(argv[0], argv)  # noqa: S606 (argv is the demo's own command line); never returns


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
