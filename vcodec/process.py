"""The `vcodec` process: how it starts and how it ends, tuned for a command that runs once and exits.

Only the program's entry points use this (`vcodec` and `python -m vcodec`, through cli.program): `cli.main()`
called from other code (the tests, a notebook) leaves the collector and the exit of the caller's process alone.

Start: the commands that run networks import torch first, with Python's cycle collector paused, and then freeze what
the import made. torch's import leaves some 160,000 objects that live until the process ends; otherwise the
collector walks them again and again while they are young, and three times in full collections, for about 0.16 s of
a 720p decode of 16 frames (benchmarks/process_overhead.py; 2-core Xeon VM, torch 2.13, 2026-12-07). Freezing
excludes them from later collections; they are never garbage, and objects made afterwards are collected as before.

End: with torch imported, Python's own shutdown (collecting every object, running torch's op-library finalizers,
tearing down modules) takes about 0.27-0.30 s, 0.02 s ending in os._exit (the same script and machine), and nothing
of it is visible outside the process once the command's outputs are closed, which every command does itself (atomic
outputs). So the process ends with os._exit after what Python's shutdown does that can be seen: the exit handlers
(`atexit`: weakref finalizers registered with atexit=True such as temporary directories, multiprocessing's joins,
logging's flush) and the flush of stdout and stderr (a failed flush exits 120, as Python does). While any non-daemon
thread is still running the process exits the ordinary way, which first waits for those threads; so it does under a
profiler or a tracer (`python -m cProfile -m vcodec ...`, coverage, a debugger), which does its own work when the
program returns.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from typing import NoReturn, Sequence

TORCH_COMMANDS = frozenset({"encode", "decode", "bench", "train"})
EXIT_FLUSH_FAILED = 120  # what CPython returns when flushing stdout at exit fails


def import_torch_for(argv: Sequence[str]) -> None:
    """Import torch now when the command in `argv` (the arguments after the program's name) uses it: with the
    cycle collector paused, and what the import made frozen. Help and other commands are left alone; an import
    that fails is left for the command to report."""
    if not argv or argv[0] not in TORCH_COMMANDS or any(a in ("-h", "--help") for a in argv):
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _other_threads_running() -> bool:
    return any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate())


def quick_exit(code: object) -> NoReturn:
    """Exit with `code` (an int, or None for 0). Anything else (a message), a process with live non-daemon
    threads, and one under a profiler or tracer take Python's ordinary exit."""
    if code is None:
        code = 0
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's, the one its own shutdown calls
    observed = sys.getprofile() is not None or sys.gettrace() is not None
    if not isinstance(code, int) or run_exit_handlers is None or observed or _other_threads_running():
        sys.exit(code)
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            if stream is sys.stdout and code == 0:
                code = EXIT_FLUSH_FAILED
    os._exit(code % 256)  # the status the OS keeps, as sys.exit gives it
