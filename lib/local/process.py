"""Local child processes that end with the process that started them (the local stack's servers and the local
job runner's subprocesses), whatever ends that process: Ctrl-C, SIGTERM, a closed terminal or SIGKILL.

On Linux the kernel delivers a chosen signal to a child when its parent dies (prctl PR_SET_PDEATHSIG), which no
handler of ours has to run for, so even `kill -9` of `make run` leaves nothing behind. Elsewhere this is a no-op
and the local stack's pidfiles (scripts/localstack.py) clear leftovers at the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1

_prctl = None
if sys.platform.startswith("linux"):
    # Resolved now, in the parent: the forked child must not load libraries (locks held by other threads).
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen: the child receives `sig` when its parent dies.

    The kernel tracks the parent THREAD: start long-lived children from a thread that lives as long as they
    should (the main thread, or a thread that waits for them). None where the platform has no such signal.
    """
    if _prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl: nobody will signal us
            os._exit(1)

    return preexec
