"""End the `vcodec` process without the interpreter's teardown, once a command has finished.

Why: with torch imported, Python's own shutdown (collecting every object, running torch's op-library finalizers,
tearing down modules) takes about 0.27 s (`python -c "import torch"`: 1.16 s with it, 0.92 s with os._exit at the
end; 2-core Xeon VM, torch 2.13, 2026-12-07), a twentieth of decoding 16 frames of 720p. Nothing of it is visible
outside the process once the command's outputs are closed, which every command does itself (atomic outputs).

What still runs, so that skipping the rest changes nothing a user or a caller can see: the exit handlers
(`atexit`: weakref finalizers registered with atexit=True such as temporary directories, multiprocessing's joins,
logging's flush), then the flush of stdout and stderr (a failed flush exits 120, as Python does). While any
non-daemon thread is still running the process exits the ordinary way, which first waits for those threads.

Only the program's entry points call this (`vcodec` and `python -m vcodec`); `cli.main()` called in a process
(the tests, a notebook) raises SystemExit as before.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn

EXIT_FLUSH_FAILED = 120  # what CPython returns when flushing stdout at exit fails


def _other_threads_running() -> bool:
    return any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate())


def quick_exit(code: object) -> NoReturn:
    """Exit with `code` (an int, or None for 0). Anything else (a message) and a process with live non-daemon
    threads take Python's ordinary exit."""
    if code is None:
        code = 0
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's, the one its own shutdown calls
    if not isinstance(code, int) or run_exit_handlers is None or _other_threads_running():
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
