"""The `vcodec` process (vcodec/process.py): torch imported up front with the collector paused, for the commands
that use it; an exit that skips the interpreter's teardown and nothing else a caller could notice (exit codes,
flushed output, exit handlers, threads still running)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib

from vcodec import __version__
from vcodec.errors import EXIT_USAGE

from conftest import REPO

# A module-level object whose __del__ only the interpreter's teardown calls; an exit handler; then the program.
SCRIPT = """
import atexit, sys, threading, time
class Teardown:
    def __del__(self):
        print("teardown ran", flush=True)
kept = Teardown()
atexit.register(lambda: print("exit handler ran"))
if {thread}:
    threading.Thread(target=lambda: (time.sleep(0.3), print("thread finished", flush=True))).start()
sys.argv = ["vcodec", *{args!r}]
from vcodec.cli import {entry}
{entry}()
"""


def run(args: list[str], entry: str = "program", thread: bool = False) -> subprocess.CompletedProcess:
    code = textwrap.dedent(SCRIPT.format(args=args, entry=entry, thread=thread))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)


def test_program_skips_teardown_but_runs_exit_handlers_and_flushes():
    done = run(["--version"])
    assert done.returncode == 0
    assert f"vcodec {__version__}" in done.stdout  # buffered (a pipe), flushed before the exit
    assert "exit handler ran" in done.stdout
    assert "teardown ran" not in done.stdout


def test_main_still_exits_the_ordinary_way():
    """The control: cli.main() (what the tests and notebooks call) leaves the teardown to Python."""
    done = run(["--version"], entry="main")
    assert done.returncode == 0
    assert "exit handler ran" in done.stdout and "teardown ran" in done.stdout


def test_program_keeps_exit_codes_and_error_lines():
    done = run(["decode", str(REPO / "no-such-file.hfc"), str(REPO / "never-written.mp4")])
    assert done.returncode == EXIT_USAGE
    assert done.stderr.strip().startswith("vcodec: error:") and len(done.stderr.strip().splitlines()) == 1
    assert not (REPO / "never-written.mp4").exists()


def test_program_waits_for_running_threads():
    done = run(["--version"], thread=True)
    assert done.returncode == 0
    assert "thread finished" in done.stdout and "exit handler ran" in done.stdout


def test_a_profiler_still_writes_its_report(tmp_path):
    """`python -m cProfile -o f -m vcodec ...` writes f when the program returns: under a profiler the program
    exits the ordinary way."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    report = tmp_path / "vcodec.prof"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(report), "-m", "vcodec", "--version"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0 and f"vcodec {__version__}" in done.stdout
    assert report.stat().st_size > 0


def test_python_dash_m_and_the_console_script_use_the_program():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["vcodec"] == "vcodec.cli:program"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "vcodec", "--version"], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0 and f"vcodec {__version__}" in done.stdout


PRELOAD = """
import gc, sys
from vcodec.process import import_torch_for
import_torch_for({argv!r})
print("torch" in sys.modules, gc.get_freeze_count(), gc.isenabled())
"""


def preload(argv: list[str]) -> tuple[str, int, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", PRELOAD.format(argv=argv)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120, check=True)
    loaded, frozen, enabled = done.stdout.split()
    return loaded, int(frozen), enabled


def test_torch_commands_import_torch_up_front_and_freeze_it():
    loaded, frozen, enabled = preload(["decode", "in.hfc", "out.mp4"])
    assert loaded == "True" and enabled == "True"
    assert frozen > 50_000  # torch's own objects, out of the collector's way


def test_other_commands_and_help_do_not_import_torch():
    for argv in (["info", "x.hfc"], ["decode", "--help"], ["--version"], []):
        assert preload(argv) == ("False", 0, "True")
