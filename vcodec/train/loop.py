"""The intra training loop: one resumable chunk of training on any device, single process or torchrun (DDP).

    vcodec train intra --data DIR --minutes 9 --resume CKPT --out CKPT --device auto

A chunk ends after --minutes or at --steps (the total, which also fixes the learning-rate schedule), whichever
comes first, and always leaves a checkpoint that continues bit-identically on the same device and thread count.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vcodec import quality as Q
from vcodec.errors import InputError
from vcodec.metrics import psnr_from_mse
from vcodec.networks.integer import check_exportable
from vcodec.networks.intra import STRIDE_Z, IntraConfig, IntraModel
from vcodec.train.checkpoint import load_checkpoint, read_state, save_checkpoint
from vcodec.train.data import DEFAULT_MAX_GIB, CropSampler, load_sources
from vcodec.train.losses import METRICS, rd_loss
from vcodec.train import processes
from vcodec.train.processes import quiet
from vcodec.train.validate import evaluate_folder


@dataclass
class TrainOptions:
    data: list[Path]
    out: Path
    resume: Path | None = None
    steps: int | None = None  # total steps of the whole run (sets the LR schedule); None: until --minutes
    minutes: float | None = None  # wall-clock length of this chunk
    batch_size: int = 8
    crop: int = 256
    lr: float = 4e-4
    lr_final: float = 2e-5
    decay_from: float = 0.8  # fraction of --steps after which the LR falls geometrically to lr_final
    n: int = 64
    m: int = 128
    metric: str = "mse"
    device: str = "auto"
    amp: bool = False
    threads: int | None = None
    seed: int = 0
    val: Path | None = None
    val_every: int = 2000
    val_qualities: tuple[float, ...] = (1, 4, 6)
    save_every: int = 500
    log_every: int = 50
    experiments: Path = Path("experiments")
    name: str | None = None
    half: bool = False  # hand-back checkpoint: bf16 weights, no optimizer state
    clip_grad: float = 1.0
    vimeo_frames: int = 1  # frames taken from each Vimeo-90k septuplet
    video_every: int = 25  # one frame in so many from video sources
    data_gib: float | None = DEFAULT_MAX_GIB  # memory budget of the decoded training pictures (None: none)
    lambda_range: tuple[float, float] | None = None  # (q=0, top level); None: the checkpoint's, or quality.LAMBDAS
    extra: dict = field(default_factory=dict)


def learning_rate(opts: TrainOptions, step: int, total: int | None) -> float:
    if not total or step < opts.decay_from * total:
        return opts.lr
    t = min(1.0, (step - opts.decay_from * total) / max(1.0, (1 - opts.decay_from) * total))
    return math.exp((1 - t) * math.log(opts.lr) + t * math.log(opts.lr_final))


def lambdas_of(q: torch.Tensor, lambdas: tuple[float, ...]) -> torch.Tensor:
    """Vectorized quality.lambda_of: geometric interpolation of the lambda table."""
    table = torch.log(torch.tensor(lambdas, dtype=torch.float32, device=q.device))
    lo = q.floor().long().clamp(max=len(lambdas) - 2)
    t = q - lo
    return torch.exp((1 - t) * table[lo] + t * table[lo + 1])


class _Logger:
    """JSON lines always; tensorboard too when it is installed."""

    def __init__(self, folder: Path, enabled: bool):
        self.enabled = enabled
        self.board = None
        if not enabled:
            return
        folder.mkdir(parents=True, exist_ok=True)
        self.file = open(folder / "log.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(folder))
        except Exception:  # tensorboard is optional at run time
            self.board = None

    def scalars(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")
        self.file.flush()
        if self.board:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.board.add_scalar(k, v, step)

    def images(self, step: int, name: str, image: torch.Tensor) -> None:
        if self.enabled and self.board:
            self.board.add_image(name, image.clamp(0, 1), step)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.board:
                self.board.close()


def _rng_state(sampler: CropSampler, device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state(), "sampler": sampler.generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(rng: dict[str, torch.Tensor], sampler: CropSampler, device: torch.device) -> None:
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "sampler" in rng:
        sampler.generator.set_state(rng["sampler"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)


def check_options(opts: TrainOptions) -> None:
    """User errors that are cheap to see, refused before any data is loaded or any process group started."""
    if opts.metric not in METRICS:
        raise InputError(f"--metric: unknown distortion metric {opts.metric!r} (one of {', '.join(METRICS)})")
    if opts.crop < STRIDE_Z or opts.crop % STRIDE_Z:
        raise InputError(f"--crop must be a positive multiple of {STRIDE_Z}, not {opts.crop}")
    if opts.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, not {opts.batch_size}")
    if opts.steps is not None and opts.steps < 0:
        raise InputError(f"--steps must be >= 0, not {opts.steps}")
    if opts.vimeo_frames < 1 or opts.video_every < 1:
        raise InputError("frames per Vimeo septuplet and the video sampling interval must be >= 1")
    if opts.data_gib is not None and opts.data_gib <= 0:
        raise InputError(f"the data memory budget must be > 0 GiB, not {opts.data_gib}")
    if opts.lambda_range is not None:
        try:
            Q.lambda_table(*opts.lambda_range)
        except (TypeError, ValueError) as e:
            raise InputError(f"--lambda-range: {e}") from None
    for root in opts.data:
        if not Path(root).exists():
            raise InputError(f"training data not found: {root}")
    if opts.val is not None and not Path(opts.val).is_dir():
        raise InputError(f"--val: no folder {opts.val}")


def check_exportable_config(config: IntraConfig) -> None:
    """A model whose integer h_s could not be exact can never ship: refuse it before training, not at export."""
    try:
        check_exportable(IntraModel(config).h_s)
    except ValueError as e:
        raise InputError(
            f"a model with N={config.n}, M={config.m} could not be exported ({e}); use fewer latent channels"
        ) from None


def train_intra(opts: TrainOptions, say=print) -> dict:
    """Run one chunk. Returns the final counters (step, last losses, validation) for the caller to report."""
    check_options(opts)
    wanted = Q.lambda_table(*opts.lambda_range) if opts.lambda_range else None
    if opts.resume:  # its own table unless told otherwise; a different one is retargeted once the weights load
        config = IntraConfig(**read_state(opts.resume)["config"])
        lambdas = wanted or config.lambdas
    else:
        lambdas = wanted or Q.LAMBDAS
        config = IntraConfig(n=opts.n, m=opts.m, lambdas=lambdas)
    check_exportable_config(config)
    world, rank, device = processes.start(opts.device, opts.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop sizes
    torch.manual_seed(opts.seed + rank)

    state: dict = {"step": 0}
    model = IntraModel(config).to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)  # 1.5x faster convolutions on CPU (oneDNN)
    optimizer = torch.optim.Adam(model.parameters(), lr=opts.lr)
    data_bytes = None if opts.data_gib is None else int(opts.data_gib * 2**30)
    pictures = load_sources(opts.data, opts.crop, video_every=opts.video_every, vimeo_frames=opts.vimeo_frames,
                            max_bytes=data_bytes, say=say if rank == 0 else quiet)
    sampler = CropSampler(pictures, opts.crop, device, seed=opts.seed + 1000 * rank)
    total = opts.steps
    if opts.resume:
        state, rng = load_checkpoint(opts.resume, model, optimizer)
        if world == 1:
            _set_rng_state(rng, sampler, device)  # bit-identical continuation
        else:
            # The checkpoint holds rank 0's generators only: every rank restarting from them would draw the same
            # crops and noise. Fresh, distinct streams per rank and chunk instead.
            torch.manual_seed(opts.seed + 7919 * int(state["step"]) + rank)
            sampler.generator.manual_seed(opts.seed + 7919 * int(state["step"]) + 1000 * (rank + 1))
        total = opts.steps or state.get("total_steps")
        if rank == 0:
            say(f"resumed {opts.resume} at step {state['step']}")
        if lambdas != config.lambdas:  # a fine-tune to another rate range: same weights, gains moved to the new table
            model.retarget(lambdas)
            for p in (model.log_gain, model.log_inv_gain):
                optimizer.state.pop(p, None)  # their moments belonged to the old levels
            if rank == 0:
                say(f"lambda table {list(config.lambdas)} -> {list(lambdas)}; gains interpolated")
            config = model.config
    train_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    name = opts.name or Path(opts.out).name
    log = _Logger(Path(opts.experiments) / name, enabled=rank == 0)
    if rank != 0:
        say = quiet
    say(
        f"training intra N={config.n} M={config.m} on {device} ({world} process{'es' if world > 1 else ''}): "
        f"{len(sampler)} pictures, {sampler.pixels() / 1e6:.1f} Mpx, batch {opts.batch_size} x {opts.crop}^2"
    )

    def checkpoint() -> None:
        if rank != 0:
            return
        spent = time.time() - start
        seconds = dict(state.get("device_seconds", {}))
        seconds[device.type] = seconds.get(device.type, 0.0) + spent
        meta = dict(
            step=step, total_steps=total, config=config.to_dict(), kind="intra", device=str(device),
            data=[str(p) for p in opts.data], device_seconds=seconds,
            recipe={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()
                    if k not in ("data", "out", "resume", "experiments")},
        )
        save_checkpoint(Path(opts.out), model, optimizer, meta, _rng_state(sampler, device), half=opts.half)

    step = int(state["step"])
    start = time.time()
    deadline = start + opts.minutes * 60 if opts.minutes else None
    window = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0, "t": time.time()}
    result: dict = {}
    model.train()
    while True:
        if total is not None and step >= total:
            break
        if deadline is not None and processes.time_is_up(deadline, world, device):
            break
        lr = learning_rate(opts, step, total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = sampler.sample(opts.batch_size)
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        q = torch.rand(opts.batch_size, device=device) * (Q.LEVELS - 1)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=opts.amp):
            out = train_model(x, q)
        parts = rd_loss(x, {k: v.float() for k, v in out.items()}, lambdas_of(q, config.lambdas), opts.metric)
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        if opts.clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), opts.clip_grad)
        optimizer.step()
        step += 1
        for k in ("loss", "bpp", "mse"):
            window[k] += float(parts[k].detach())
        window["n"] += 1
        if step % opts.log_every == 0 and window["n"]:
            n, dt = window["n"], time.time() - window["t"]
            row = {k: window[k] / n for k in ("loss", "bpp", "mse")}
            row.update(lr=lr, steps_per_s=n / dt, pixels_per_s=n * opts.batch_size * opts.crop**2 / dt * world)
            log.scalars(step, row)
            if rank == 0:
                say(
                    f"step {step}: loss {row['loss']:.4f} bpp {row['bpp']:.3f} psnr(avg mse) "
                    f"{psnr_from_mse(row['mse']):.2f} lr {lr:.2e} {row['steps_per_s']:.2f} steps/s "
                    f"{row['pixels_per_s'] / 1e3:.0f} kpx/s"
                )
            result = row
            window = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0, "t": time.time()}
        if rank == 0 and opts.val and opts.val_every and step % opts.val_every == 0:
            result["val"] = _validate(model, opts, device, log, step, say)
            model.train()
        if step % opts.save_every == 0:
            checkpoint()
    checkpoint()
    log.close()
    processes.finish(world)
    return {"step": step, "rank": rank, **result}


def _validate(model: IntraModel, opts: TrainOptions, device, log: _Logger, step: int, say) -> dict:
    rows = evaluate_folder(model, opts.val, opts.val_qualities, device)
    for q, row in rows.items():
        log.scalars(step, {f"val/q{q:g}/bpp": row["bpp"], f"val/q{q:g}/psnr": row["psnr"]})
        if "example" in row:
            log.images(step, f"val/q{q:g}", row.pop("example"))
    say("validation (estimated bits): " + "  ".join(f"q{q:g} {r['bpp']:.3f} bpp {r['psnr']:.2f} dB" for q, r in rows.items()))
    return {f"q{q:g}": {"bpp": r["bpp"], "psnr": r["psnr"]} for q, r in rows.items()}
