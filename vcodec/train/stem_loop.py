"""The P-frame (STEM) training loop: resumable chunks on cached latents, single process or torchrun (DDP).

    vcodec train stem --data CLIPS... --val CLIP... --out CKPT --resume CKPT --minutes 30

The intra model (g_a, g_s, gains, its I-frame entropy model) is frozen: a P-frame's reconstruction is then what
an I-frame's would be, so the loss is the rate alone. Each sample is a short sequence coded as the codec codes a
GOP: frame 0 by the intra model, frames 1.. by STEM, each conditioned on the model's own previous decoded latent
(never the source's). The loss is the P-frames' bits relative to the I-frame's (so every quality weighs the same,
as a BD-rate does): its mean is the fraction of an I-frame that a P-frame costs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from vcodec import quality as Q
from vcodec.errors import InputError
from vcodec.networks.integer import check_stack_exportable
from vcodec.networks.intra import IntraModel
from vcodec.networks.layers import HYPER_STRIDE
from vcodec.networks.stem import StemConfig, StemModel
from vcodec.train.checkpoint import load_checkpoint, read_state, save_checkpoint
from vcodec.train.latents import SequenceSampler, build_caches
from vcodec.train.distortion import distortion_bits, synthesis_sensitivity
from vcodec.train.loop import _Logger, lambdas_of, learning_rate
from vcodec.train import processes
from vcodec.train.processes import quiet


@dataclass
class StemOptions:
    data: list[Path]
    out: Path
    val: list[Path] = field(default_factory=list)
    resume: Path | None = None
    intra: str = "intra-n64m128"  # the frozen intra model (a name in models/ or a .safetensors path)
    cache: Path = Path(".data/latents")
    variant: str = "full"
    c: int = 64
    hidden: int = 192
    steps: int | None = None
    minutes: float | None = None
    batch_size: int = 8
    crop: int = 16  # in latents (16 = 256 pixels)
    frames: int = 4  # per sample: one I-frame, then P-frames
    max_stride: int = 3
    lr: float = 3e-4
    lr_final: float = 1e-5
    # The parts that start as the intra model's (h_a, h_s, z prior) learn this much slower: Adam moves every weight
    # by about the learning rate per step, which at 3e-4 undoes the intra model's own decay.
    pretrained_lr_scale: float = 0.1
    # The latent error's cost (lambda D, train/distortion.py) beside the rate, times this; 0: the rate alone.
    distortion_weight: float = 1.0
    decay_from: float = 0.8
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    val_every: int = 1000
    val_frames: int = 9
    val_qualities: tuple[float, ...] = (1, 4, 6)
    save_every: int = 250
    log_every: int = 50
    experiments: Path = Path("experiments")
    name: str | None = None
    half: bool = False
    clip_grad: float = 1.0
    clip_frames: int = 600
    motion_per_photo: int = 4
    motion_frames: int = 7
    motion_size: int = 384
    extra: dict = field(default_factory=dict)


class SequenceRate(nn.Module):
    """Trainable STEM over a frozen intra model: the bits of each P-frame of a short GOP, and what its latent error
    costs (train/distortion.py; zero without a synthesis sensitivity)."""

    def __init__(self, stem: StemModel, intra: IntraModel, sensitivity: torch.Tensor | None = None):
        super().__init__()
        self.stem = stem
        self._intra = [intra]  # a list, not a submodule: frozen, and no business of DDP's
        self.sensitivity = sensitivity

    def forward(self, latents: torch.Tensor, q: torch.Tensor):
        """latents (B, T, M, h, w) at gain 1 -> I-frame bits (B,), P-frame bits (B, T-1), and the distortion, in
        bits' units, of the I-frame (B,) and of each P-frame (B, T-1)."""
        intra = self._intra[0]
        gain = intra.gain(q)
        y0 = latents[:, 0] * gain
        bits_i, y_hat = intra.coded_estimate(y0)
        distort = self._distortion(q)
        dist_i = distort(y0 - y_hat)
        per_frame, dist_p = [], []
        for t in range(1, latents.shape[1]):
            out = self.stem(latents[:, t] * gain, y_hat, q)
            per_frame.append(out["bits_y"] + out["bits_z"])
            dist_p.append(distort(out["error"]))
            y_hat = out["y_hat"]
        return bits_i, torch.stack(per_frame, 1), dist_i, torch.stack(dist_p, 1)

    def _distortion(self, q: torch.Tensor):
        if self.sensitivity is None:
            return lambda e: torch.zeros(e.shape[0], device=e.device)
        intra = self._intra[0]
        inverse, lam = intra.inverse_gain(q), lambdas_of(q, intra.config.lambdas)
        return lambda e: distortion_bits(e, self.sensitivity.to(e.device), inverse, lam)


def check_options(opts: StemOptions) -> None:
    if opts.crop < HYPER_STRIDE or opts.crop % HYPER_STRIDE:
        raise InputError(f"--crop (in latents) must be a positive multiple of {HYPER_STRIDE}, not {opts.crop}")
    if opts.frames < 2:
        raise InputError("--frames must be at least 2 (an I-frame and a P-frame)")
    if not 0 <= opts.pretrained_lr_scale <= 1:
        raise InputError("--pretrained-lr-scale must be in 0..1")
    if not 0 <= opts.distortion_weight <= 100:
        raise InputError("--distortion-weight must be in 0..100")
    if opts.batch_size < 1 or opts.max_stride < 1:
        raise InputError("--batch-size and --max-stride must be >= 1")
    for root in [*opts.data, *opts.val]:
        if not Path(root).exists():
            raise InputError(f"training data not found: {root}")
    try:
        StemConfig(variant=opts.variant, c=opts.c, hidden=opts.hidden)
    except ValueError as e:
        raise InputError(f"--variant: {e}") from None


def check_exportable_stem(config: StemConfig) -> None:
    """A STEM whose integer twin could not be exact can never ship: refuse it before training, not at export."""
    try:
        for mod in StemModel(config).entropy_modules().values():
            check_stack_exportable(mod)
    except ValueError as e:
        raise InputError(f"this STEM configuration could not be exported ({e})") from None


def _load_intra(name: str, device: torch.device):
    from vcodec import weights

    bundle = weights.load(name, "cpu")
    model = IntraModel(bundle.config)
    model.load_state_dict(bundle.model.state_dict())
    for p in model.parameters():
        p.requires_grad_(False)
    return bundle, model.to(device).eval()


def train_stem(opts: StemOptions, say=print) -> dict:
    """Run one chunk. Returns the final counters (step, last losses, validation)."""
    check_options(opts)
    if opts.resume:
        state0 = read_state(opts.resume)
        if state0.get("kind") != "stem":
            raise InputError(f"{opts.resume} is not a STEM checkpoint")
        config = StemConfig(**state0["config"])
        intra_name = state0.get("intra", {}).get("name", opts.intra)
    else:
        intra_name = opts.intra
        config = None  # M and N are the intra model's: known once it is loaded
    world, rank, device = processes.start(opts.device, opts.threads)
    torch.manual_seed(opts.seed + rank)
    log_say = say if rank == 0 else quiet

    bundle, intra = _load_intra(intra_name, device)
    if opts.resume and state0.get("intra", {}).get("sha256") not in (None, bundle.hash_hex):
        raise InputError(f"{opts.resume} was trained on intra model {intra_name} with other weights "
                         f"(sha256 {state0['intra']['sha256'][:16]}..., loaded {bundle.hash_hex[:16]}...)")
    if config is None:
        config = StemConfig(m=bundle.config.m, n=bundle.config.n, variant=opts.variant, c=opts.c, hidden=opts.hidden)
    if (config.m, config.n) != (bundle.config.m, bundle.config.n):
        raise InputError(f"STEM has M={config.m}, N={config.n} but intra model {intra_name} has "
                         f"M={bundle.config.m}, N={bundle.config.n}")
    check_exportable_stem(config)
    cache_opts = dict(clip_frames=opts.clip_frames, motion_per_photo=opts.motion_per_photo,
                      motion_frames=opts.motion_frames, motion_size=opts.motion_size, seed=opts.seed)
    if world > 1:
        import torch.distributed as dist
    if world > 1 and rank != 0:
        dist.barrier()  # rank 0 builds the caches first; the others then read them
    sequences = build_caches(opts.data, bundle.model, bundle.hash_hex, opts.cache, device, say=log_say, **cache_opts)
    val_sequences = (build_caches(opts.val, bundle.model, bundle.hash_hex, opts.cache, device, say=log_say,
                                  **{**cache_opts, "clip_frames": opts.val_frames}) if opts.val else [])
    if world > 1 and rank == 0:
        dist.barrier()
    sampler = SequenceSampler(sequences, opts.crop, opts.frames, opts.max_stride, seed=opts.seed + 1000 * rank)

    model = StemModel(config)
    if not opts.resume:
        model.start_from(intra)
    model = model.to(device)
    pretrained = [p for n, p in model.named_parameters() if n.startswith(StemModel.FROM_INTRA)]
    new = [p for n, p in model.named_parameters() if not n.startswith(StemModel.FROM_INTRA)]
    optimizer = torch.optim.Adam([{"params": new, "scale": 1.0},
                                  {"params": pretrained, "scale": opts.pretrained_lr_scale}], lr=opts.lr)
    state: dict = {"step": 0}
    total = opts.steps
    if opts.resume:
        state, rng = load_checkpoint(opts.resume, model, optimizer)
        if world == 1:
            if "torch" in rng:
                torch.set_rng_state(rng["torch"])
            if "sampler" in rng:
                sampler.generator.set_state(rng["sampler"])
        else:  # fresh, distinct streams per rank and chunk (the checkpoint holds rank 0's only)
            torch.manual_seed(opts.seed + 7919 * int(state["step"]) + rank)
            sampler.generator.manual_seed(opts.seed + 7919 * int(state["step"]) + 1000 * (rank + 1))
        total = opts.steps or state.get("total_steps")
        log_say(f"resumed {opts.resume} at step {state['step']}")
    sensitivity = None
    if opts.distortion_weight:
        if state.get("synthesis_sensitivity"):  # measured when the run started: resumes stay bit-identical
            sensitivity = torch.tensor(state["synthesis_sensitivity"], dtype=torch.float32)
        else:
            probe = SequenceSampler(sequences, opts.crop, 2, 1, seed=opts.seed).sample(4)[:, 0]
            sensitivity = synthesis_sensitivity(intra.cpu(), probe)
            intra.to(device)
            log_say(f"synthesis sensitivity per latent channel: median {float(sensitivity.median()):.3g}, "
                    f"range {float(sensitivity.min()):.3g}..{float(sensitivity.max()):.3g}")
    rate = SequenceRate(model, intra, sensitivity)
    train_model: nn.Module = rate
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(rate, device_ids=[device.index] if device.type == "cuda" else None)

    name = opts.name or Path(opts.out).name
    log = _Logger(Path(opts.experiments) / name, enabled=rank == 0)
    params = sum(p.numel() for p in model.parameters())
    log_say(
        f"training STEM ({config.variant}, {params / 1e6:.2f} M parameters) over {intra_name} on {device} "
        f"({world} process{'es' if world > 1 else ''}): {len(sampler)} sequences, {sampler.frames_held()} frames; "
        f"batch {opts.batch_size} x {opts.frames} frames x {opts.crop}^2 latents"
    )

    def checkpoint() -> None:
        if rank != 0:
            return
        seconds = dict(state.get("device_seconds", {}))
        seconds[device.type] = seconds.get(device.type, 0.0) + (time.time() - start) * world
        meta = dict(
            step=step, total_steps=total, config=config.to_dict(), kind="stem", device=str(device),
            synthesis_sensitivity=sensitivity.tolist() if sensitivity is not None else None,
            intra={"name": intra_name, "sha256": bundle.hash_hex}, data=[str(p) for p in opts.data],
            device_seconds=seconds, processes=world,
            recipe={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()
                    if k not in ("data", "val", "out", "resume", "experiments", "cache")},
        )
        rng = {"torch": torch.get_rng_state(), "sampler": sampler.generator.get_state()}
        save_checkpoint(Path(opts.out), model, optimizer, meta, rng, half=opts.half)

    step = int(state["step"])
    start = time.time()
    deadline = start + opts.minutes * 60 if opts.minutes else None
    window = {"loss": 0.0, "rate": 0.0, "dist": 0.0, "bpp_p": 0.0, "n": 0, "t": time.time()}
    result: dict = {}
    model.train()
    while True:
        if total is not None and step >= total:
            break
        if deadline is not None and processes.time_is_up(deadline, world, device):
            break
        lr = learning_rate(opts, step, total)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        latents = sampler.sample(opts.batch_size).to(device)
        q = torch.rand(opts.batch_size, device=device) * (Q.LEVELS - 1)
        bits_i, bits_p, dist_i, dist_p = train_model(latents, q)
        w = opts.distortion_weight
        # The P-frames' rate-distortion cost over the I-frame's: every quality weighs the same, as in a BD-rate.
        loss = ((bits_p + w * dist_p).mean(1) / (bits_i + w * dist_i).clamp_min(1.0)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if opts.clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), opts.clip_grad)
        optimizer.step()
        step += 1
        window["loss"] += float(loss.detach())
        window["rate"] += float((bits_p.detach().mean(1) / bits_i.clamp_min(1.0)).mean())
        window["dist"] += float(dist_p.detach().mean() / dist_i.mean().clamp_min(1e-9))
        window["bpp_p"] += float(bits_p.detach().mean()) / (opts.crop * 16) ** 2
        window["n"] += 1
        if step % opts.log_every == 0:
            n, dt = window["n"], time.time() - window["t"]
            row = {"loss": window["loss"] / n, "p_over_i": window["rate"] / n, "dist_p_over_i": window["dist"] / n,
                   "bpp_p": window["bpp_p"] / n, "lr": lr, "steps_per_s": n / dt}
            log.scalars(step, row)
            log_say(f"step {step}: RD cost P/I {row['loss']:.3f}  bits P/I {row['p_over_i']:.3f}  distortion P/I "
                    f"{row['dist_p_over_i']:.3f}  P bpp {row['bpp_p']:.4f}  lr {lr:.2e}  {row['steps_per_s']:.2f} steps/s")
            result = row
            window = {"loss": 0.0, "rate": 0.0, "dist": 0.0, "bpp_p": 0.0, "n": 0, "t": time.time()}
        if rank == 0 and val_sequences and opts.val_every and step % opts.val_every == 0:
            result["val"] = validate(rate, val_sequences, opts.val_qualities, device, log, step, log_say)
            model.train()
        if step % opts.save_every == 0:
            checkpoint()
    checkpoint()
    log.close()
    processes.finish(world)
    return {"step": step, "rank": rank, **result}


@torch.no_grad()
def evaluate(rate: SequenceRate, sequences: list[torch.Tensor], qualities, device) -> dict:
    """Per quality, over whole held-out sequences (rounded, as coded): P-frames' bits over what the same frames cost
    as I-frames, their bpp (of the latent's area: the picture padded to a multiple of 16), and their estimated
    distortion over the I-frames' (1.0 when the sequence rate has no synthesis sensitivity)."""
    rate.eval()
    intra = rate._intra[0]
    rows = {}
    for q in qualities:
        p_bits = i_bits = pixels = p_dist = i_dist = 0.0
        for seq in sequences:
            lat = seq.float().to(device)
            qq = torch.tensor([float(q)], device=device)
            _, bits_p, _, dist_p = rate(lat[None], qq)
            y = lat[1:] * intra.gain(qq)
            all_i, y_hat = intra.coded_estimate(y)
            p_bits += float(bits_p.sum())
            i_bits += float(all_i.sum())
            p_dist += float(dist_p.sum())
            i_dist += float(rate._distortion(qq)(y - y_hat).sum())
            pixels += (lat.shape[0] - 1) * lat.shape[-2] * lat.shape[-1] * 256
        rows[q] = {"p_over_i": p_bits / i_bits, "bpp_p": p_bits / pixels, "bpp_i": i_bits / pixels,
                   "dist_p_over_i": p_dist / i_dist if i_dist else 1.0}
    return rows


def validate(rate, sequences, qualities, device, log, step, say) -> dict:
    rows = evaluate(rate, sequences, qualities, device)
    for q, row in rows.items():
        log.scalars(step, {f"val/q{q:g}/{k}": v for k, v in row.items()})
    say("validation (held-out clips, estimated bits): " + "  ".join(
        f"q{q:g} P/I {r['p_over_i']:.3f} ({r['bpp_p']:.4f} vs {r['bpp_i']:.4f} bpp, distortion "
        f"{r['dist_p_over_i']:.3f})" for q, r in rows.items()))
    return {f"q{q:g}": r for q, r in rows.items()}
