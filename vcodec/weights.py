"""Named models: models/<name>.safetensors holds the float networks, the integer entropy path and the coder's
tables. Loading is safetensors only (never a pickle), and a stream names the SHA-256 of the file it was made with.

Shipped models are found next to the package: `vcodec/_models/` in an installed wheel, `models/` in a checkout
(editable install). VCODEC_MODELS points elsewhere. A path to a .safetensors file works where the user names a model
(`--model`); a name read from a stream is only ever looked up among those folders (`load_named`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vcodec import tables as T
from vcodec.errors import ModelError
from vcodec.networks.integer import IntegerHyperSynthesis
from vcodec.networks.intra import IntraConfig, IntraModel
from vcodec.networks.stem import StemConfig, StemModel
from vcodec.networks.stem_integer import IntegerStem

DEFAULT_MODEL = "intra-n64m128"
DEFAULT_STEM_MODEL = "stem-n64m128"  # P-frames over DEFAULT_MODEL
SUFFIX = ".safetensors"
WEIGHTS_FORMAT = "1"
# Stored in half precision, computed in fp32: plenty for them, and half the file. h_s is stored only as its integer
# twin (the float copy is rebuilt from it at load).
HALF_PREFIXES = ("g_a.", "g_s.", "h_a.")


# A model name: what a stream may ask for. No path separators, not '.' or '..' or a hidden file.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*\Z")
MODEL_NAME_RULE = "letters, digits, '-', '_' and '.', not starting with '.'"


class WeightsError(ModelError):
    """Weights missing, unreadable, or not what a stream asks for."""


def models_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent
    dirs = []
    if os.environ.get("VCODEC_MODELS"):
        dirs.append(Path(os.environ["VCODEC_MODELS"]))
    dirs += [here / "_models", here.parent / "models"]
    return dirs


def available_models() -> list[str]:
    names = set()
    for d in models_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob(f"*{SUFFIX}"))
    return sorted(names)


def is_model_name(name: str) -> bool:
    return bool(_MODEL_NAME.match(name))


def find_named(name: str) -> Path:
    """A model by bare name, among the models folders only: never a path, whatever the name holds."""
    if not is_model_name(name):
        raise WeightsError(f"{ascii(name)} is not a model name ({MODEL_NAME_RULE})")
    for d in models_dirs():
        candidate = d / f"{name}{SUFFIX}"
        if candidate.is_file():
            return candidate
    have = ", ".join(available_models()) or "none"
    raise WeightsError(f"model '{name}' not found (available: {have})")


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The user's choice of model: a path to a weights file, or a model's name."""
    p = Path(name_or_path)
    text = str(name_or_path)
    if p.suffix == SUFFIX or os.sep in text or (os.altsep and os.altsep in text):
        if p.is_file():
            return p
        raise WeightsError(f"weights file not found: {p}")
    return find_named(text)


def file_hash(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


@dataclass
class ModelBundle:
    name: str
    path: Path
    sha256: bytes
    config: IntraConfig
    model: IntraModel
    h_s: IntegerHyperSynthesis
    gaussian: T.RaggedTables
    z_tables: T.RaggedTables
    metadata: dict

    @property
    def hash_hex(self) -> str:
        return self.sha256.hex()


def _ragged_from(tensors: dict, prefix: str) -> T.RaggedTables:
    t = T.RaggedTables(
        tensors[f"{prefix}.counts"].numpy().astype(np.int32),
        tensors[f"{prefix}.offsets"].numpy().astype(np.int64),
        tensors[f"{prefix}.low"].numpy().astype(np.int32),
    )
    t.validate()
    return t


def _ragged_tensors(t: T.RaggedTables, prefix: str) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.counts": torch.from_numpy(t.counts.astype(np.int32)),
        f"{prefix}.offsets": torch.from_numpy(t.offsets.astype(np.int64)),
        f"{prefix}.low": torch.from_numpy(t.low.astype(np.int32)),
    }


@dataclass
class StemBundle:
    """A P-frame model: its float h_a (encoder only), the integer entropy path, z_t's tables, and the intra model
    whose g_a / g_s / gains it was trained over (a stream needs both, and records both hashes)."""

    name: str
    path: Path
    sha256: bytes
    config: StemConfig
    model: StemModel
    integer: IntegerStem
    z_tables: T.RaggedTables
    intra_name: str
    intra_sha256: bytes
    metadata: dict

    @property
    def hash_hex(self) -> str:
        return self.sha256.hex()


_LOADED: dict[tuple, object] = {}


def load(name_or_path: str | os.PathLike = DEFAULT_MODEL, device: torch.device | str = "cpu") -> ModelBundle:
    """Load (once per process: bundles are cached by file identity and device) a model file: the user's choice, a
    name or a path. For a name read from a stream, use load_named."""
    return _cached(resolve(name_or_path), device)


def load_named(name: str, device: torch.device | str = "cpu") -> ModelBundle:
    """Load a shipped model by bare name (what a stream's header says): never opens a path the name spells."""
    return _cached(find_named(name), device)


def load_stem(name_or_path: str | os.PathLike = DEFAULT_STEM_MODEL, device: torch.device | str = "cpu") -> StemBundle:
    """A P-frame model: the user's choice, a name or a path."""
    return _cached(resolve(name_or_path), device, "stem")


def load_stem_named(name: str, device: torch.device | str = "cpu") -> StemBundle:
    """A shipped P-frame model by bare name (what a stream's header says)."""
    return _cached(find_named(name), device, "stem")


def _cached(path: Path, device: torch.device | str, kind: str = "intra"):
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(device), kind)
    if key not in _LOADED:
        _LOADED[key] = _load(path, device) if kind == "intra" else _load_stem(path, device)
    return _LOADED[key]


def _read(path: Path, kind: str) -> tuple[dict, dict[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own types for every malformed file
        raise WeightsError(f"cannot read weights {path}: {e}") from None
    if meta.get("vcodec.format") != WEIGHTS_FORMAT or meta.get("vcodec.kind") != kind:
        what = "intra (I-frame)" if kind == "intra" else "STEM (P-frame)"
        raise WeightsError(f"{path} is not a vcodec {what} model (format {meta.get('vcodec.format')}, "
                           f"kind {meta.get('vcodec.kind')})")
    return meta, tensors


def _load(path: Path, device: torch.device | str) -> ModelBundle:
    meta, tensors = _read(path, "intra")
    try:
        config = IntraConfig(**json.loads(meta["vcodec.config"]))
        model = IntraModel(config)
        own = model.state_dict()
        state = {k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")}
        h_s = IntegerHyperSynthesis.from_tensors(tensors)
        if not any(k.startswith("h_s.") for k in state):  # stored only as integers (files since Nov 2026)
            state.update(_float_h_s(model, h_s))
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            raise WeightsError(f"{path}: network tensors do not match the model's layout")
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
        gaussian = _ragged_from(tensors, "tables.gaussian")
        z_tables = _ragged_from(tensors, "tables.z")
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise WeightsError(f"{path}: malformed weights ({e})") from None
    if len(gaussian) != T.SCALE_COUNT or len(z_tables) != config.n:
        raise WeightsError(f"{path}: table counts do not match the model")
    model.eval().to(device)
    name = meta.get("vcodec.name", path.stem)
    return ModelBundle(name, path, file_hash(path), config, model, h_s, gaussian, z_tables, meta)


def _float_h_s(model: IntraModel, h_s: IntegerHyperSynthesis) -> dict[str, torch.Tensor]:
    """The float h_s's state, rebuilt from the integer twin the file stores."""
    names = [name for name, m in model.h_s.named_children() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    pairs = h_s.float_weights()
    if len(names) != len(pairs):
        raise ValueError("integer h_s has the wrong number of layers")
    state = {}
    for name, (w, b) in zip(names, pairs):
        state[f"h_s.{name}.weight"], state[f"h_s.{name}.bias"] = w.float(), b.float()
    return state


def _load_stem(path: Path, device: torch.device | str) -> StemBundle:
    meta, tensors = _read(path, "stem")
    try:
        config = StemConfig(**json.loads(meta["vcodec.config"]))
        intra = json.loads(meta["vcodec.intra"])
        intra_name, intra_sha = str(intra["name"]), bytes.fromhex(intra["sha256"])
        if not is_model_name(intra_name) or len(intra_sha) != 32:
            raise ValueError("bad intra model reference")
        model = StemModel(config)
        integer = IntegerStem.from_tensors(config, tensors)
        state = {k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")}
        state.update(integer.float_state(model))
        own = model.state_dict()
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            raise WeightsError(f"{path}: network tensors do not match the model's layout")
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
        z_tables = _ragged_from(tensors, "tables.z")
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise WeightsError(f"{path}: malformed weights ({e})") from None
    if len(z_tables) != config.n or len(integer.thresholds) != T.SCALE_COUNT - 1:
        raise WeightsError(f"{path}: table counts do not match the model")
    model.eval().to(device)
    name = meta.get("vcodec.name", path.stem)
    return StemBundle(name, path, file_hash(path), config, model, integer, z_tables, intra_name, intra_sha, meta)


def export_stem(model: StemModel, path: Path, name: str, intra_name: str, intra_sha256: bytes,
                info: dict | None = None) -> bytes:
    """Write a P-frame model file (float h_a and z prior, integer entropy path, z_t tables); returns its SHA-256."""
    model = model.float().cpu().eval()
    entropy = tuple(f"{k}." for k in model.entropy_modules() if k != "out") + ("out.",)
    tensors = {}
    for k, v in model.state_dict().items():
        if k.startswith(entropy):
            continue  # stored once, as the integer twin (load rebuilds the float networks from it)
        half = k.startswith("h_a.") and v.is_floating_point()
        tensors[f"net.{k}"] = v.detach().to(torch.float16 if half else torch.float32).contiguous()
    scales = T.scale_table()
    tensors.update(IntegerStem.from_float(model, T.log_scale_thresholds(scales)).tensors())
    tensors.update(_ragged_tensors(T.factorized_tables(z_cdf(model), model.config.n), "tables.z"))
    meta = {
        "vcodec.format": WEIGHTS_FORMAT,
        "vcodec.kind": "stem",
        "vcodec.name": name,
        "vcodec.config": json.dumps(model.config.to_dict()),
        "vcodec.intra": json.dumps({"name": intra_name, "sha256": intra_sha256.hex()}),
        "vcodec.info": json.dumps(info or {}),
    }
    return _write(tensors, meta, Path(path))


def _write(tensors: dict, meta: dict, path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return file_hash(path)


@torch.no_grad()
def z_cdf(model: IntraModel | StemModel):
    prior = copy.deepcopy(model.z_prior).double().cpu()

    @torch.no_grad()
    def cdf(values: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(values)[:, None, :]
        return torch.sigmoid(prior.cdf_logits(x))[:, 0, :].detach().numpy()

    return cdf


def export(model: IntraModel, path: Path, name: str, info: dict | None = None) -> bytes:
    """Write a model file (float nets, integer h_s, tables); returns its SHA-256."""
    model = model.float().cpu().eval()
    tensors = {}
    for k, v in model.state_dict().items():
        if k.startswith("h_s."):
            continue  # stored once, as the integer twin below (load rebuilds the float h_s from it)
        keep_half = k.startswith(HALF_PREFIXES) and v.is_floating_point()
        tensors[f"net.{k}"] = v.detach().to(torch.float16 if keep_half else torch.float32).contiguous()
    scales = T.scale_table()
    tensors.update(IntegerHyperSynthesis.from_float(model.h_s, T.log_scale_thresholds(scales)).tensors())
    tensors.update(_ragged_tensors(T.gaussian_tables(scales), "tables.gaussian"))
    tensors.update(_ragged_tensors(T.factorized_tables(z_cdf(model), model.config.n), "tables.z"))
    tensors["tables.scales"] = torch.from_numpy(scales)
    meta = {
        "vcodec.format": WEIGHTS_FORMAT,
        "vcodec.kind": "intra",
        "vcodec.name": name,
        "vcodec.config": json.dumps(model.config.to_dict()),
        "vcodec.info": json.dumps(info or {}),
    }
    return _write(tensors, meta, Path(path))
