"""The `vcodec` command line: Typer commands, rich progress bars, and errors turned into one line + an exit code.

No codec logic lives here; every command calls the Python API (vcodec/api.py) or the trainer (vcodec/train/).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from vcodec import __version__
from vcodec import quality as Q
from vcodec.errors import EXIT_INTERRUPTED, EXIT_IO, EXIT_USAGE, InputError, Interrupted, VcodecError

app = typer.Typer(
    name="vcodec",
    help="A learned video codec: encode, decode, inspect, benchmark and train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
train_app = typer.Typer(help="Train the networks and export shipped weights.", no_args_is_help=True)
app.add_typer(train_app, name="train")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
EXIT_INTERNAL = 70


def _fail(message: str, code: int) -> None:
    err.print(f"[bold red]vcodec: error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _parse_fps(text: Optional[str]) -> Optional[Fraction]:
    if text is None:
        return None
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise VcodecError(f"--fps: '{text}' is not a number or a ratio like 30000/1001") from None
    return value


def _parse_quality(text: str) -> float:
    try:
        return Q.parse(text)
    except ValueError as e:
        raise InputError(f"-q/--quality: {e}") from None


def _parse_target(quality, bitrate, bpp, target_psnr):
    """A rate-control target (rate_control.Target) or None; at most one of -q, --bitrate, --bpp, --target-psnr."""
    given = [name for name, v in (("-q", quality), ("--bitrate", bitrate), ("--bpp", bpp),
                                  ("--target-psnr", target_psnr)) if v is not None]
    if len(given) > 1:
        raise InputError(f"give one of -q, --bitrate, --bpp and --target-psnr, not {' and '.join(given)}")
    from vcodec.rate_control import Target, parse_bitrate

    if bitrate is not None:
        return Target("bitrate", parse_bitrate(bitrate))
    if bpp is not None:
        return Target("bpp", bpp)
    if target_psnr is not None:
        return Target("psnr", target_psnr)
    return None


def _parse_lambda_range(text: Optional[str]) -> Optional[tuple[float, float]]:
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
        Q.lambda_table(low, high)
    except ValueError:
        raise InputError(f"--lambda-range: expected LOW,HIGH with 0 < LOW < HIGH, got '{text}'") from None
    return low, high


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        # The bar goes when the command ends: the summary (stdout) or the error (stderr) is then the one line left.
        transient=True,
    )


def interruptible(command):
    """Ctrl-C ends a command with our message and exit code, whatever the installed Click/Typer does with it."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted("interrupted; nothing half-written was left behind") from None

    return run


def _print_version(value: bool) -> None:
    if value:
        out.print(f"vcodec {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """A learned video codec: encode, decode, inspect, benchmark and train."""


@app.command()
@interruptible
def encode(
    input: Path = typer.Argument(..., help="Video (anything PyAV opens), .y4m, folder of PNG frames, one image, or - for y4m on stdin."),
    output: Path = typer.Argument(..., help="The .hfc stream to write."),
    quality: Optional[str] = typer.Option(None, "-q", "--quality",
                                          help=f"0 (fewest bits) .. 7 (best quality), fractions interpolate; or low, med, high (1, 4, 6); default {Q.DEFAULT_QUALITY}."),
    bitrate: Optional[str] = typer.Option(None, "-b", "--bitrate", help="Average bitrate of the file, e.g. 800k or 1.5M (a quality per GOP, instead of -q)."),
    bpp: Optional[float] = typer.Option(None, "--bpp", help="Average bits per pixel of the file (a quality per GOP, instead of -q)."),
    target_psnr: Optional[float] = typer.Option(None, "--target-psnr", help="PSNR-RGB (dB) each GOP should reach (a quality per GOP, instead of -q)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Encode at most this many frames."),
    start: int = typer.Option(0, "--start", help="Skip this many frames first."),
    gop: Optional[int] = typer.Option(None, "--gop", help="Frames from one I-frame to the next, the others P-frames (default 32; 1: all-intra; -1: only the first frame is an I-frame)."),
    fps: Optional[str] = typer.Option(None, "--fps", help="Frame rate of a PNG folder or image input (default 25), e.g. 30000/1001; a video is retimed to it (its frames' own times are dropped)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name or .safetensors path (default: the shipped one)."),
    inter_model: Optional[str] = typer.Option(None, "--inter-model", help="P-frame model name or .safetensors path (default: the shipped one, when it belongs to --model)."),
    fixed_gop: bool = typer.Option(False, "--fixed-gop", help="Frame types exactly as --gop says (by default a P-frame that would cost more than an I-frame is coded as one)."),
    preset: str = typer.Option("medium", "--preset", help="medium; slow, slower or veryslow search each frame for cheaper symbols of the same quality (slower encoding, same decoder)."),
    psnr: bool = typer.Option(False, "--psnr", help="Also decode each frame and report PSNR-RGB."),
    precision: str = typer.Option("auto", "--precision", help="Pixel path: auto (g_a in bf16 where the CPU or GPU runs it natively, g_s in float32 or, with AMX, split bf16 products), mixed (g_s too: faster decoding, ~0.1 dB less at high q, more on near-black frames), or fp32."),
    no_audio: bool = typer.Option(False, "-an", "--no-audio", help="Leave the input's audio out (it is kept, as coded, by default)."),
    overwrite: bool = typer.Option(False, "-y", "--overwrite", help="Overwrite OUTPUT if it exists."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Also print the time each stage took (ms per frame)."),
) -> None:
    """Encode a video into a .hfc stream."""
    from vcodec import api

    target = _parse_target(quality, bitrate, bpp, target_psnr)  # usage errors before any progress bar is drawn
    q = _parse_quality(quality if quality is not None else str(Q.DEFAULT_QUALITY))
    with _progress() as bar:
        state = {}

        def on_start(info):
            state["info"] = info
            state["task"] = bar.add_task("encode", total=info["frames"], rate="", note="")

        def on_frame(n, nbytes, total, score):
            info = state["info"]
            task = bar.tasks[state["task"]]
            bpp = total * 8 / (info["width"] * info["height"] * n)
            speed = f"{n / task.elapsed:.2f} fps" if task.elapsed else ""
            # Running means, like the running bpp, so the bar ends on the summary's numbers.
            if score is not None:
                state["psnr_sum"] = state.get("psnr_sum", 0.0) + score
            note = f"{bpp:.4f} bpp" + (f"  {state['psnr_sum'] / n:.2f} dB" if score is not None else "")
            bar.update(state["task"], completed=n, rate=speed, note=note)

        result = api.encode(input, output, q, frames, start, gop, _parse_fps(fps), device, model, overwrite, psnr,
                            on_start, on_frame, inter_model, preset, not no_audio, _note, target, fixed_gop,
                            precision)
    structure = (f"{result.frames - result.p_frames} I + {result.p_frames} P" if result.p_frames else "all I-frames")
    rate = f"{float(result.fps):.3f} fps" + (" (variable: each frame keeps its time)" if result.timed else "")
    line = (
        f"{result.frames} frames ({structure}) {result.width}x{result.height} @ {rate} -> {output}: "
        f"{result.bytes} bytes, {result.bpp:.4f} bpp, {result.kbps:.1f} kbit/s"
    )
    if result.qualities:
        low, high = min(result.qualities), max(result.qualities)
        line += f", q {low:g}" + (f"..{high:g}" if high != low else "")
    if result.display is not None:
        from vcodec.display import describe

        line += f", {describe(result.display)}"
    if result.audio:
        line += f", audio {', '.join(result.audio)} copied"
    if result.psnr is not None:
        line += f", PSNR-RGB {result.psnr:.2f} dB"
    line += f", {result.frames / result.seconds:.2f} frames/s"
    out.print(line, highlight=False)
    if verbose:
        _print_stages(result.timings, result.frames)


def _print_stages(timings: dict, frames: int) -> None:
    """-v: where the time went, and the process's peak memory, on stderr (stdout may carry video)."""
    from vcodec.stages import describe, peak_memory_mb

    err.print(f"stages: {describe(timings['stages'], frames)}; peak memory {peak_memory_mb()} MB", highlight=False)


def _note(text: str) -> None:
    """What the user should know but is no error (audio re-encoded or left out): one line on stderr."""
    err.print(f"[bold]vcodec: note:[/] {text}", highlight=False)


def _parse_timestamp(text: Optional[str]) -> Optional[Fraction]:
    """Seconds as ffmpeg's -ss takes them: 12.5, or [HH:]MM:SS[.frac]."""
    if text is None:
        return None
    parts = text.strip().split(":")
    try:
        if len(parts) > 3 or any(p.strip() == "" for p in parts):
            raise ValueError
        value = Fraction(0)
        for p in parts:
            if any(c in p for c in "/eE_ "):
                raise ValueError
            value = value * 60 + Fraction(p)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"--ss: '{text}' is not a time like 12.5 or 1:02.5") from None
    if value < 0:
        raise InputError("--ss must be >= 0")
    return value


@app.command()
@interruptible
def decode(
    input: Path = typer.Argument(..., help="The .hfc stream."),
    output: Path = typer.Argument(..., help=".mp4/.mov (playable H.264), .mkv/.webm/.avi (lossless), .y4m, a folder for PNG frames, or - for y4m on stdout."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    model: Optional[str] = typer.Option(None, "--model", help="Weights to use instead of the model the stream names."),
    codec: Optional[str] = typer.Option(None, "--codec", help="Encoder for video outputs, e.g. libx264, libx265, libsvtav1."),
    crf: Optional[int] = typer.Option(None, "--crf", help="Quality of --codec (lossless when omitted, but for the playable .mp4/.mov default)."),
    lossless: bool = typer.Option(False, "--lossless", help="Exact .mp4/.mov (RGB H.264, qp 0; few players play it) instead of playable 4:2:0."),
    start: int = typer.Option(0, "--start", help="First frame to write (decoding starts at the I-frame at or before it)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Write at most this many frames."),
    ss: Optional[str] = typer.Option(None, "--ss", help="Start at the first frame at or after this time: seconds (12.5) or [HH:]MM:SS[.frac]."),
    no_audio: bool = typer.Option(False, "-an", "--no-audio", help="Leave the stream's audio out of the output."),
    precision: str = typer.Option("auto", "--precision", help="Pixel path: auto (g_a in bf16 where the CPU or GPU runs it natively, g_s in float32 or, with AMX, split bf16 products), mixed (g_s too: faster decoding, ~0.1 dB less at high q, more on near-black frames), or fp32."),
    overwrite: bool = typer.Option(False, "-y", "--overwrite", help="Overwrite OUTPUT if it exists."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Also print the time each stage took (ms per frame)."),
) -> None:
    """Decode a .hfc stream into a video, .y4m, PNG frames or y4m on stdout."""
    from vcodec import api
    from vcodec.media import is_stdio

    start_seconds = _parse_timestamp(ss)
    # With video on stdout, stdout carries nothing else: the summary goes to stderr with the progress bar.
    summary = err if is_stdio(output) else out
    with _progress() as bar:
        state = {}

        def on_start(info):
            state["task"] = bar.add_task("decode", total=info["frames"] or None, rate="", note="")

        def on_frame(n):
            task = bar.tasks[state["task"]]
            bar.update(state["task"], completed=n, rate=f"{n / task.elapsed:.2f} fps" if task.elapsed else "")

        result = api.decode(input, str(output) if is_stdio(output) else output, device, model, overwrite, codec, crf,
                            on_start, on_frame, start, frames, start_seconds, lossless, not no_audio, _note,
                            precision)
    span = f" (frames {result.start}..{result.start + result.frames - 1})" if result.start else ""
    summary.print(
        f"{result.frames} frames{span} {result.width}x{result.height} @ {float(result.fps):.3f} fps -> "
        f"{'stdout' if is_stdio(output) else output}, {result.frames / result.seconds:.2f} frames/s",
        highlight=False,
    )
    if verbose:
        _print_stages(result.timings, result.frames)


@app.command()
@interruptible
def info(
    input: Path = typer.Argument(..., help="The .hfc stream."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Describe a .hfc stream: header and per-frame table (like ffprobe)."""
    from vcodec import api
    from vcodec.errors import EXIT_DAMAGED

    data = api.probe(input)
    if as_json:
        print(json.dumps(data, indent=1))
    else:
        head = Table(show_header=False, box=None)
        qualities = sorted({f["quality"] for f in data["frames"]})
        for key, value in [
            ("file", f"{data['file']} ({data['file_bytes']} bytes)"),
            ("format", f".hfc v{data['format_version']}, {data['entropy_form']} entropy path"),
            ("model", f"{data['model']} (sha256 {data['weights_sha256'][:16]}...)"
                      + (f", P-frames {data['inter_model']} (sha256 {data['inter_weights_sha256'][:16]}...)"
                         if data["inter_model"] else "")),
            ("size", f"{data['width']}x{data['height']} (coded {data['padded_width']}x{data['padded_height']})"),
            ("frame rate", f"variable frame rate, {data['fps']} on average ({data['fps_float']:.3f} fps), each frame's "
                           f"time in units of {data['time_base']} s" if data["variable_frame_rate"] else
                           f"{data['fps']} ({data['fps_float']:.3f} fps)"),
            ("frames", f"{data['frame_count']} ({data['duration_s']:.2f} s), "
                       f"{sum(f['type'] == 'I' for f in data['frames'])} I + {sum(f['type'] == 'P' for f in data['frames'])} P, "
                       f"GOP {data['gop'] if data['gop'] else 'only the first frame'}"),
            ("quality", ", ".join(f"{q:g}" for q in qualities) or "-"),
            ("colour", f"matrix {_matrix_name(data['colour']['matrix'])}, {'full' if data['colour']['full_range'] else 'limited'} range, {data['colour']['bit_depth']}-bit"),
        ] + ([("display", _display_text(data["display"]))] if data["display"] else []) + [
            ("rate", f"{data['bpp']:.4f} bpp, {data['bitrate_kbps']:.1f} kbit/s"),
            ("layout", f"header {data['header_bytes']} B + packets {sum(f['bytes'] for f in data['frames'])} B"
                       + (f" + audio {data['audio_bytes']} B" if data["audio"] else "") + f" + index {data['index_bytes']} B"),
        ] + [(f"audio {a['index']}", f"{a['codec']} {a['sample_rate']} Hz, {a['channels']} channel{'s' if a['channels'] != 1 else ''}, "
              f"{a['packets']} packets, {a['bytes']} B, {a['duration_s']:.2f} s" + (f" from {a['start_s']:+.3f} s" if a["start_s"] else ""))
             for a in data["audio"]]:
            head.add_row(f"[bold]{key}", value)
        out.print(head)
        frames = Table("frame", "time", "type", "q", "latent", "hyper", "bytes", "bpp", box=None)
        for f in data["frames"]:
            frames.add_row(str(f["index"]), f"{f['time_s']:.4f}", f["type"], f"{f['quality']:g}",
                           "x".join(map(str, f["latent_shape"])), "x".join(map(str, f["hyper_shape"])), str(f["bytes"]),
                           f"{f['bpp']:.4f}")
        out.print(frames)
    if data["damage"]:
        _fail(data["damage"]["message"], EXIT_DAMAGED)


@train_app.command("intra")
@interruptible
def train_intra(
    data: List[Path] = typer.Option(..., "--data", help="Image folder, Vimeo-90k root or video file (repeatable)."),
    out_dir: Path = typer.Option(Path("checkpoints/intra"), "--out", help="Checkpoint folder to write."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Checkpoint folder to continue from."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Stop this chunk after so many minutes."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Total steps of the run (sets the LR schedule)."),
    batch_size: int = typer.Option(8, "--batch-size"),
    crop: int = typer.Option(256, "--crop"),
    lr: float = typer.Option(4e-4, "--lr"),
    lr_final: float = typer.Option(2e-5, "--lr-final", help="LR reached at --steps."),
    decay_from: float = typer.Option(0.8, "--decay-from", help="Fraction of --steps after which the LR decays."),
    n: int = typer.Option(64, "--transform-channels", help="N: channels of the transforms and of z (new runs only)."),
    m: int = typer.Option(128, "--latent-channels", help="M: channels of y (new runs only)."),
    metric: str = typer.Option("mse", "--metric", help="mse or ms-ssim."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    amp: bool = typer.Option(False, "--amp", help="bf16 autocast (GPU; also runs on CPU)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch."),
    val: Optional[Path] = typer.Option(None, "--val", help="Held-out image folder evaluated every --val-every steps."),
    val_every: int = typer.Option(2000, "--val-every"),
    save_every: int = typer.Option(500, "--save-every"),
    log_every: int = typer.Option(50, "--log-every"),
    name: Optional[str] = typer.Option(None, "--name", help="Run name under --experiments (default: the --out folder name)."),
    experiments: Path = typer.Option(Path("experiments"), "--experiments"),
    half: bool = typer.Option(False, "--half", help="Write a small hand-back checkpoint (bf16 weights, no optimizer state)."),
    seed: int = typer.Option(0, "--seed"),
    vimeo_frames: int = typer.Option(1, "--vimeo-frames", help="Frames per Vimeo-90k septuplet (1: im4; 2: im1, im7)."),
    video_every: int = typer.Option(25, "--video-every", help="Use one frame in so many from video sources."),
    data_gib: float = typer.Option(4.0, "--data-gib", help="Memory budget for decoded training pictures (GiB); Vimeo is sampled to fit."),
    lambda_range: Optional[str] = typer.Option(None, "--lambda-range", help="LOW,HIGH: the lambdas of q=0 and q=7, log-spaced between (new runs: 0.0002,0.3; a resumed run keeps its own unless given)."),
) -> None:
    """Train (or continue training) the variable-rate intra model for one chunk."""
    from vcodec.train.loop import TrainOptions, train_intra as run

    opts = TrainOptions(
        data=data, out=out_dir, resume=resume, steps=steps, minutes=minutes, batch_size=batch_size, crop=crop, lr=lr,
        lr_final=lr_final, decay_from=decay_from, n=n, m=m, metric=metric, device=device, amp=amp, threads=threads,
        val=val, val_every=val_every, save_every=save_every, log_every=log_every, name=name, experiments=experiments,
        half=half, seed=seed, vimeo_frames=vimeo_frames, video_every=video_every, data_gib=data_gib,
        lambda_range=_parse_lambda_range(lambda_range),
    )
    result = run(opts, say=lambda s: err.print(s, highlight=False))
    if result["rank"] == 0:
        out.print(f"checkpoint {out_dir} at step {result['step']}", highlight=False)


@train_app.command("stem")
@interruptible
def train_stem(
    data: List[Path] = typer.Option(..., "--data", help="Video file or folder of them, Vimeo-90k root, or photo folder (synthetic camera motion); repeatable."),
    val: List[Path] = typer.Option([], "--val", help="Held-out video (repeatable): P-frame rate against all-intra every --val-every steps."),
    out_dir: Path = typer.Option(Path("checkpoints/stem"), "--out", help="Checkpoint folder to write."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Checkpoint folder to continue from."),
    intra: str = typer.Option("intra-n64m128", "--intra", help="The frozen intra model (name or .safetensors path)."),
    cache: Path = typer.Option(Path(".data/latents"), "--cache", help="Folder of cached latents (built on first use)."),
    variant: str = typer.Option("full", "--variant", help="full, residual, no-spm, no-tpm or no-spm-tpm (new runs)."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Stop this chunk after so many minutes."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Total steps of the run (sets the LR schedule)."),
    batch_size: int = typer.Option(8, "--batch-size"),
    crop: int = typer.Option(16, "--crop", help="Crop size in latents (16 = 256 pixels); a multiple of 4."),
    frames: int = typer.Option(4, "--frames", help="Frames per sample: one I-frame, then P-frames."),
    max_stride: int = typer.Option(3, "--max-stride", help="Largest frame step within a sample."),
    lr: float = typer.Option(3e-4, "--lr"),
    lr_final: float = typer.Option(1e-5, "--lr-final"),
    decay_from: float = typer.Option(0.8, "--decay-from"),
    pretrained_lr_scale: float = typer.Option(0.1, "--pretrained-lr-scale", help="LR factor of the parts that start as the intra model's (h_a, h_s, z prior)."),
    distortion_weight: float = typer.Option(1.0, "--distortion-weight", help="Weight of the latent error's cost (lambda D through g_s's sensitivity) beside the rate; 0: the rate alone."),
    c: int = typer.Option(64, "--features", help="Width of each prior's features (new runs)."),
    hidden: int = typer.Option(192, "--hidden", help="Width of the fusion (new runs)."),
    device: str = typer.Option("auto", "--device"),
    threads: Optional[int] = typer.Option(None, "--threads"),
    val_every: int = typer.Option(1000, "--val-every"),
    save_every: int = typer.Option(250, "--save-every"),
    log_every: int = typer.Option(50, "--log-every"),
    name: Optional[str] = typer.Option(None, "--name"),
    experiments: Path = typer.Option(Path("experiments"), "--experiments"),
    half: bool = typer.Option(False, "--half", help="Write a small hand-back checkpoint (bf16 weights, no optimizer state)."),
    seed: int = typer.Option(0, "--seed"),
    clip_frames: int = typer.Option(600, "--clip-frames", help="Frames taken from the start of each training video."),
    motion_per_photo: int = typer.Option(4, "--motion-per-photo", help="Synthetic sequences per photo."),
    motion_frames: int = typer.Option(7, "--motion-frames"),
    motion_size: int = typer.Option(384, "--motion-size", help="Side of the synthetic sequences in pixels."),
) -> None:
    """Train (or continue training) the P-frame model (STEM) for one chunk, on cached latents of the intra model."""
    from vcodec.train.stem_loop import StemOptions, train_stem as run

    opts = StemOptions(
        data=data, val=list(val), out=out_dir, resume=resume, intra=intra, cache=cache, variant=variant, c=c,
        hidden=hidden, steps=steps, minutes=minutes, batch_size=batch_size, crop=crop, frames=frames,
        max_stride=max_stride, lr=lr, lr_final=lr_final, decay_from=decay_from,
        pretrained_lr_scale=pretrained_lr_scale, distortion_weight=distortion_weight, device=device, threads=threads,
        seed=seed, val_every=val_every, save_every=save_every, log_every=log_every, experiments=experiments,
        name=name, half=half, clip_frames=clip_frames, motion_per_photo=motion_per_photo,
        motion_frames=motion_frames, motion_size=motion_size,
    )
    result = run(opts, say=lambda s: err.print(s, highlight=False))
    if result["rank"] == 0:
        out.print(f"checkpoint {out_dir} at step {result['step']}", highlight=False)


@train_app.command("export")
@interruptible
def train_export(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder written by `vcodec train intra`."),
    name: str = typer.Argument(..., help="Model name: writes MODELS/NAME.safetensors."),
    models: Path = typer.Option(Path("models"), "--models", help="Folder to write into."),
    overwrite: bool = typer.Option(False, "-y", "--overwrite", help="Replace an existing model file."),
) -> None:
    """Export a checkpoint as a shipped model (float nets, integer entropy path, coder tables)."""
    from vcodec.train.export import export_checkpoint
    from vcodec.weights import SUFFIX

    # A shipped model is replaced only on purpose: streams made with the old one would no longer decode.
    if (models / f"{name}{SUFFIX}").exists() and not overwrite:
        raise InputError(f"{models / f'{name}{SUFFIX}'} exists (use -y to overwrite)")
    path, digest = export_checkpoint(checkpoint, name, models)
    out.print(f"{path}: sha256 {digest.hex()}", highlight=False)


# H.273 matrix_coefficients codes the container records (docs/FORMAT.md).
_MATRICES = {0: "RGB", 1: "BT.709", 2: "unspecified", 5: "BT.601, BT.470BG", 6: "BT.601, SMPTE 170M", 9: "BT.2020 NCL"}


def _display_text(display: dict) -> str:
    """As `vcodec info` shows display metadata (rotation counter-clockwise): only what is not the default."""
    from vcodec.container import Display
    from vcodec.display import describe

    num, den = display["sample_aspect_ratio"].split(":")
    text = describe(Display(display["rotation"], display["mirror"], Fraction(int(num), int(den))))
    return f"{text} (for players to apply: the pixels are coded as the source stores them)"


def _matrix_name(code: int) -> str:
    return f"{code} ({_MATRICES[code]})" if code in _MATRICES else str(code)


def _register_optional_commands() -> None:
    try:
        from vcodec.bench import register
    except ImportError:
        return
    register(app)


def _reader_went_away() -> int:
    """The program reading our stdout stopped (`vcodec decode x.hfc - | head -c 1000`): like `cat`, stop quietly.
    stdout then points at /dev/null, so Python's own flush at exit cannot fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 0


def main(argv: Optional[list] = None) -> None:
    _register_optional_commands()
    command = typer.main.get_command(app)
    debug = bool(os.environ.get("VCODEC_DEBUG"))
    try:
        code = command.main(args=argv, prog_name="vcodec", standalone_mode=False)
    except BrokenPipeError:  # media.PipeClosed among them
        code = _reader_went_away()
    except typer.Exit as e:
        code = e.exit_code
    except typer.Abort:
        err.print("vcodec: interrupted", highlight=False)
        code = EXIT_INTERRUPTED
    except VcodecError as e:
        err.print(f"[bold red]vcodec: error:[/] {e}", highlight=False)
        code = e.exit_code
    except KeyboardInterrupt:  # outside a command (while parsing arguments, say)
        err.print("vcodec: interrupted", highlight=False)
        code = EXIT_INTERRUPTED
    except OSError as e:
        if debug:
            raise
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        err.print(f"[bold red]vcodec: error:[/] {e.strerror or e}{where}", highlight=False)
        code = EXIT_IO
    except Exception as e:
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):  # Click's usage errors (bad option, missing argument)
            if e.format_message():  # empty when the help was shown for a bare `vcodec`
                err.print(f"[bold red]vcodec: error:[/] {e.format_message()}", highlight=False)
            sys.exit(EXIT_USAGE)
        if debug:  # a bug, not a user error: still one line unless asked for the traceback
            raise
        err.print(f"[bold red]vcodec: internal error:[/] {type(e).__name__}: {e} (set VCODEC_DEBUG=1 for a traceback)", highlight=False)
        code = EXIT_INTERNAL
    sys.exit(code if isinstance(code, int) else 0)


def program() -> None:
    """The `vcodec` program (its console script and `python -m vcodec`): main() in a process tuned to run one
    command (process.py: torch imported with the cycle collector paused, and an exit without the interpreter's
    teardown; together about 0.4 s of a 720p decode)."""
    from vcodec.process import import_torch_for, quick_exit

    import_torch_for(sys.argv[1:])
    try:
        main()
    except SystemExit as e:
        quick_exit(e.code)
    quick_exit(0)


if __name__ == "__main__":
    program()
