"""Whether a process is still alive, by its pid: how a file left by a process (a spool, a metrics
file, an embedded database's user list) is known to be orphaned."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while process `pid` exists (signal 0 checks without signalling); another user's
    process, which may not be signalled, is alive too."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
