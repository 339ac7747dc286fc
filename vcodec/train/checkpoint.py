"""Training checkpoints: a folder of safetensors shards (< 15 MiB each) plus a small JSON of counters.

A checkpoint holds everything a bit-identical resume needs (fp32 weights, Adam moments, every random generator's
state) and nothing executable: no pickle anywhere. `half=True` writes a hand-back copy with bf16 weights and no
optimizer state: small enough to carry off a GPU machine, enough to continue (not bit-identically) or export.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vcodec.errors import InputError

SHARD_BYTES = 14 * 1024 * 1024
STATE_FILE = "state.json"


def save_sharded(tensors: dict[str, torch.Tensor], folder: Path, prefix: str) -> list[str]:
    """Write `tensors` as prefix-00000.safetensors, prefix-00001... each below SHARD_BYTES (unless one tensor is larger)."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    names = []
    for i, shard in enumerate(shards):
        name = f"{prefix}-{i:05d}.safetensors"
        save_file(shard, str(folder / name))
        names.append(name)
    return names


def load_sharded(folder: Path, prefix: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob(f"{prefix}-*.safetensors")):
        out.update(load_file(str(path)))
    return out


def _optimizer_tensors(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> tuple[dict, dict]:
    tensors, scalars = {}, {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state:
                continue
            name = names[id(p)]
            for key, value in state.items():
                if key == "step":
                    scalars[name] = float(value)
                else:
                    tensors[f"{name}.{key}"] = value
    return tensors, scalars


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: dict,
    rng: dict[str, torch.Tensor] | None = None,
    half: bool = False,
) -> None:
    """Write atomically: a sibling temp folder is filled, then swapped in, so a crash never leaves half a checkpoint."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: (v.to(torch.bfloat16) if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_sharded(weights, tmp, "model")
    state = dict(state, half=half)
    if optimizer is not None and not half:
        names = {id(p): n for n, p in model.named_parameters()}
        tensors, steps = _optimizer_tensors(optimizer, names)
        save_sharded(tensors, tmp, "optimizer")
        state["optimizer_steps"] = steps
    if rng and not half:
        save_sharded(rng, tmp, "rng")
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def read_state(folder: Path) -> dict:
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise InputError(f"{folder} is not a training checkpoint (no {STATE_FILE})")
    return json.loads(path.read_text())


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None):
    """Restore weights (and optimizer moments where present); returns (state dict, rng tensors)."""
    folder = Path(folder)
    state = read_state(folder)
    weights = load_sharded(folder, "model")
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in weights.items()})
    if optimizer is not None and "optimizer_steps" in state:
        tensors = load_sharded(folder, "optimizer")
        params = dict(model.named_parameters())
        for name, step in state["optimizer_steps"].items():
            p = params[name]
            entry = {"step": torch.tensor(step)}
            for key in ("exp_avg", "exp_avg_sq"):
                if f"{name}.{key}" in tensors:
                    entry[key] = tensors[f"{name}.{key}"].to(p.device)
            optimizer.state[p] = entry
    return state, load_sharded(folder, "rng")
