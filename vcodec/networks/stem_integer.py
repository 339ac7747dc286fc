"""The integer-exact twin of STEM's entropy path: z_t and y_hat_{t-1} (and the decoded anchors) -> mu and scale
index of each symbol of a P-frame, bit-identical on any machine (networks/integer.py has the scheme and bounds).

Every input is an integer: z_t as sent, and latents in fixed point (`integer.to_fixed` of the float32 decoded
latent, which encoder and decoder hold bit for bit). The hyper-synthesis ends in a linear layer (the hyperprior's
own mu and log sigma), requantized to the activations' fixed point before the fusion. The fusion is 1x1
convolutions, so each checkerboard pass evaluates it at its own half of the positions only. Means come out in
fixed point too (ACT_FRAC_BITS), so the decoded latent residual + mu is exact in float32.
"""

from __future__ import annotations

import numpy as np
import torch

from vcodec.networks.checkerboard import Positions
from vcodec.networks.integer import (
    ACT_FRAC_BITS, ACT_MAX, Z_CLAMP, IntegerStack, round_half_up, scale_index, thresholds_at, work_dtype,
)
from vcodec.networks.stem import StemConfig, StemModel

PREFIX = "int.stem."


class Prepared:
    """What both passes of one P-frame share: the hyperprior's and the temporal prior's activations, and the
    previous latent, as integers in the work dtype (integer.work_dtype: int32 where the int8 path reads them)."""

    def __init__(self, hyper: torch.Tensor, temporal: torch.Tensor | None, y_prev: torch.Tensor, q: float):
        work = work_dtype()
        self.hyper = hyper.to(work)  # (2M, h, w) integers at ACT_FRAC_BITS
        self.temporal = None if temporal is None else temporal.to(work)  # (c, h, w)
        self.y_prev = y_prev  # (M, h, w) fixed point, float64
        self.y_prev_work = y_prev.to(work)
        self.q = q


class IntegerStem:
    def __init__(self, config: StemConfig, stacks: dict[str, IntegerStack], thresholds: np.ndarray):
        self.config = config
        self.stacks = stacks
        self.thresholds = torch.as_tensor(thresholds, dtype=torch.float64)
        self._empty_context: torch.Tensor | None = None
        self._check()

    def _check(self) -> None:
        cfg, s = self.config, self.stacks
        wanted = {"h_s", "fusion", "out"} | ({"tpm"} if cfg.tpm else set()) | ({"ctx"} if cfg.spm else set())
        if set(s) != wanted:
            raise ValueError(f"integer STEM stacks {sorted(s)} do not match variant {cfg.variant}")
        expect = {
            "h_s": (cfg.n, 2 * cfg.m), "fusion": (cfg.fusion_inputs(), cfg.hidden),
            "out": (cfg.hidden + 2 * cfg.m + (cfg.m if cfg.skip else 0), 2 * cfg.m),
            "tpm": (cfg.m, cfg.c), "ctx": (cfg.m, cfg.c),
        }
        for name, stack in s.items():
            if (stack.input_channels(), stack.output_channels()) != expect[name]:
                raise ValueError(f"integer STEM stack {name} has the wrong channel counts")
        if s["h_s"].ends_in_relu or s["out"].ends_in_relu or not s["fusion"].ends_in_relu:
            raise ValueError("integer STEM stacks end in the wrong kind of layer")
        for name in ("tpm", "ctx"):
            if name in s and not s[name].ends_in_relu:
                raise ValueError(f"integer STEM stack {name} must end in a ReLU")
        for name in ("fusion", "out"):
            if any(layer["kind"] != "conv" or layer["weight"].shape[2:] != (1, 1) for layer in s[name].layers):
                raise ValueError(f"integer STEM stack {name} must be 1x1 convolutions")
        t = self.thresholds
        if t.dim() != 1 or len(t) < 1 or bool((t[1:] < t[:-1]).any()):
            raise ValueError("integer STEM's scale thresholds are missing or out of order")

    # -- export and storage ----------------------------------------------------------------------------------
    @classmethod
    def from_float(cls, model: StemModel, log_thresholds: np.ndarray) -> "IntegerStem":
        stacks = {}
        for name, mod in model.entropy_modules().items():
            stacks[name] = IntegerStack.from_float(mod, in_exp=0 if name == "h_s" else ACT_FRAC_BITS)
        return cls(model.config, stacks, thresholds_at(log_thresholds, stacks["out"].out_exp))

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"{PREFIX}thresholds": self.thresholds.to(torch.int64)}
        for name, stack in self.stacks.items():
            out.update(stack.tensors(f"{PREFIX}{name}."))
        return out

    @classmethod
    def from_tensors(cls, config: StemConfig, tensors: dict[str, torch.Tensor]) -> "IntegerStem":
        stacks = {}
        for name in ("h_s", "tpm", "ctx", "fusion", "out"):
            if f"{PREFIX}{name}.0.weight" in tensors:
                stacks[name] = IntegerStack.from_tensors(tensors, f"{PREFIX}{name}.", 0 if name == "h_s" else ACT_FRAC_BITS)
        return cls(config, stacks, tensors[f"{PREFIX}thresholds"].to(torch.float64).numpy())

    def float_state(self, model: StemModel) -> dict[str, torch.Tensor]:
        """The float entropy networks' state, rebuilt from the integers (model files store only these)."""
        state = {}
        for name, mod in model.entropy_modules().items():
            convs = [k for k, m in mod.named_children() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
            pairs = self.stacks[name].float_weights()
            if len(convs) != len(pairs):
                raise ValueError(f"integer STEM stack {name} has the wrong number of layers")
            attr = "out" if name == "out" else name
            for k, (w, b) in zip(convs, pairs):
                key = attr if name == "out" else f"{attr}.{k}"
                state[f"{key}.weight"], state[f"{key}.bias"] = w.float(), b.float()
        return state

    # -- inference -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, z: np.ndarray, y_prev: torch.Tensor, q: float) -> Prepared:
        """z: integers (N, zh, zw); y_prev: fixed point (M, h, w) float64. The shared part of both passes."""
        h, w = y_prev.shape[-2:]
        a = torch.from_numpy(np.asarray(z, dtype=np.float64)).clamp(-Z_CLAMP, Z_CLAMP)[None]
        hs = self.stacks["h_s"]
        acc = hs(a)[0, :, :h, :w]
        hyper = round_half_up(acc * 2.0 ** (ACT_FRAC_BITS - hs.out_exp)).clamp_(-ACT_MAX, ACT_MAX)
        temporal = self.stacks["tpm"](y_prev[None], work_dtype())[0] if "tpm" in self.stacks else None
        return Prepared(hyper, temporal, y_prev, q)

    def _context(self, anchors: torch.Tensor | None, where: Positions) -> torch.Tensor:
        """The spatial prior's features at the positions `where` (C, n): of the decoded anchors, or, without any,
        the stack's output for zeros at every position."""
        ctx = self.stacks["ctx"]
        if anchors is not None:
            return where.take(ctx(anchors[None], work_dtype())[0])
        if self._empty_context is None:
            self._empty_context = ctx(torch.zeros(1, self.config.m, 1, 1, dtype=torch.float64))[0, :, 0]
        return self._empty_context.expand(-1, where.count)

    @torch.no_grad()
    def parameters(self, prep: Prepared, where: Positions | torch.Tensor, anchors: torch.Tensor | None = None):
        """mu (fixed point, float64 integers) and scale index (uint8) of the symbols at the positions `where`
        (Positions, or a bool mask (h, w)), each (M, n) in raster order. `anchors`: the decoded anchors in fixed
        point, zero elsewhere (the second checkerboard pass), or None (the first, or the only pass)."""
        cfg = self.config
        where = Positions.of(where)
        n, work = where.count, prep.hyper.dtype
        pick = where.take  # (C, h, w) -> (C, n)
        parts = [pick(prep.hyper)]
        if prep.temporal is not None:
            parts.append(pick(prep.temporal))
        if cfg.spm:
            parts.append(self._context(anchors, where))
        plane = torch.full((1, n), round(prep.q * 2**ACT_FRAC_BITS), dtype=work)
        hidden = self.stacks["fusion"].points(torch.cat([p.to(work) for p in (*parts, plane)]), work)
        inputs = [hidden, parts[0]] + ([pick(prep.y_prev_work)] if cfg.skip else [])  # hidden: in `work`
        out = self.stacks["out"]
        acc = out.points(torch.cat(inputs))
        m = cfg.m
        mu = round_half_up(acc[:m] * 2.0 ** (ACT_FRAC_BITS - out.out_exp))
        if cfg.residual:
            mu = mu + pick(prep.y_prev)
        mu.clamp_(-ACT_MAX, ACT_MAX)
        return mu, scale_index(acc[m:], self.thresholds)
