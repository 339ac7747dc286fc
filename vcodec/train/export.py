"""Checkpoint -> shipped model: `vcodec train export CKPT NAME` writes models/NAME.safetensors (intra or STEM)."""

from __future__ import annotations

import time
from pathlib import Path

from vcodec.errors import InputError
from vcodec.networks.intra import IntraConfig, IntraModel
from vcodec.networks.stem import StemConfig, StemModel
from vcodec.train.checkpoint import load_checkpoint, read_state
from vcodec.weights import SUFFIX, export, export_stem


def export_checkpoint(checkpoint: Path, name: str, models: Path = Path("models")) -> tuple[Path, bytes]:
    state = read_state(checkpoint)
    kind = state.get("kind")
    if kind not in ("intra", "stem"):
        raise InputError(f"{checkpoint} is not an intra or STEM checkpoint")
    info = {
        "step": state["step"],
        "device_seconds": state.get("device_seconds", {}),
        "data": state.get("data"),
        "recipe": state.get("recipe"),
        "exported": time.strftime("%Y-%m-%d"),
    }
    path = Path(models) / f"{name}{SUFFIX}"
    if kind == "intra":
        model = IntraModel(IntraConfig(**state["config"]))
        load_checkpoint(checkpoint, model)
        return path, export(model, path, name, info)
    model = StemModel(StemConfig(**state["config"]))
    load_checkpoint(checkpoint, model)
    intra = state["intra"]
    return path, export_stem(model, path, name, intra["name"], bytes.fromhex(intra["sha256"]), info)
