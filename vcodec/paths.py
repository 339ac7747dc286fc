"""Small path helpers shared by every layer (no dependencies: the trainer uses them too)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from vcodec.errors import InputError, OutputError


def natural_key(name: str | os.PathLike):
    """Sort key that orders f2 before f10: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(name))]


def check_output(output: Path, overwrite: bool, inputs: tuple[Path, ...] = (), what: str = "output") -> None:
    """Refuse an output we must not or cannot write, before any work is done."""
    if any(output.resolve() == Path(i).resolve() for i in inputs):
        raise InputError(f"{what} {output} is also the input")
    if output.exists() and not overwrite:
        raise InputError(f"{output} exists (use -y to overwrite)")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {output}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {output}: folder {parent} is not writable")


def named_path(path: str | os.PathLike) -> Path:
    """`path` with a real last component: '.', '..', 'x/..' and '/' have none, so they become the folder they name."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        return path.resolve()
    return path
