"""Checkpoint -> shipped model: `vcodec train export CKPT NAME` writes models/NAME.safetensors."""

from __future__ import annotations

import time
from pathlib import Path

from vcodec.errors import InputError
from vcodec.networks.intra import IntraConfig, IntraModel
from vcodec.train.checkpoint import load_checkpoint, read_state
from vcodec.weights import SUFFIX, export


def export_checkpoint(checkpoint: Path, name: str, models: Path = Path("models")) -> tuple[Path, bytes]:
    state = read_state(checkpoint)
    if state.get("kind") != "intra":
        raise InputError(f"{checkpoint} is not an intra checkpoint")
    model = IntraModel(IntraConfig(**state["config"]))
    load_checkpoint(checkpoint, model)
    info = {
        "step": state["step"],
        "device_seconds": state.get("device_seconds", {}),
        "data": state.get("data"),
        "recipe": state.get("recipe"),
        "exported": time.strftime("%Y-%m-%d"),
    }
    path = Path(models) / f"{name}{SUFFIX}"
    return path, export(model, path, name, info)
