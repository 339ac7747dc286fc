"""Errors a user can cause, each with the exit code the command line ends with (documented in the README)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 1  # bad arguments, missing or unsupported input, output exists without -y
EXIT_DAMAGED = 2  # the .hfc stream is damaged or not a stream (intact frames before the damage are written)
EXIT_MODEL = 3  # weights missing, unreadable, or not the ones the stream was made with
EXIT_IO = 4  # cannot write the output (permissions, full disk)
EXIT_INTERRUPTED = 130  # Ctrl-C; nothing half-written is left behind


class VcodecError(Exception):
    """Base of errors that end a command with one line and `exit_code`."""

    exit_code = EXIT_USAGE


class InputError(VcodecError):
    exit_code = EXIT_USAGE


class OutputError(VcodecError):
    exit_code = EXIT_IO


class ModelError(VcodecError):
    exit_code = EXIT_MODEL


class DamagedStream(VcodecError):
    """The bytes are not a valid .hfc stream from `frame` on (None: the file header itself)."""

    exit_code = EXIT_DAMAGED

    def __init__(self, message: str, frame: int | None = None):
        super().__init__(message)
        self.frame = frame


class Interrupted(VcodecError):
    """Ctrl-C. Outputs are written to temp files and renamed at the end, so nothing half-written remains."""

    exit_code = EXIT_INTERRUPTED
