"""`vcodec bench`: rate-distortion and speed of vcodec against x264, x265 and SVT-AV1 on the user's own footage.

For every sequence and setting it encodes and decodes for real and measures the decoded 8-bit RGB against the
source's: bpp from the real stream (the whole .hfc file for vcodec, the elementary stream's packets for the
baselines, vcodec/baselines.py), PSNR-RGB, PSNR-YUV 4:2:0 (BT.709 full range, (6 Y + U + V) / 8), MS-SSIM-RGB,
encode and decode frames/s, and for vcodec the seconds spent in the networks and in entropy coding. Then BD-rates
of vcodec against each baseline (vcodec/bdrate.py). Results go to a rich table, a JSON file in CompressAI's
format, rewritten after every point (vcodec/rd_results.py), and an RD plot.

The baselines' CRFs are swept automatically unless given: starting from a middle CRF, the sweep moves to lower
CRFs until the baseline reaches vcodec's highest bpp and PSNR-RGB on that sequence, and to higher ones until it
gets down to vcodec's lowest, then fills gaps so the curve has about AUTO_POINTS evenly spread points. CRFs lie on
a lattice, the start CRF plus multiples of 3 (x264, x265) or 4 (SVT-AV1), clamped to the CRF limits, so sequences
share them for the average curve.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from vcodec import bdrate
from vcodec.errors import InputError, Interrupted, OutputError
from vcodec.paths import check_output, natural_key
from vcodec.rd_results import AVERAGE, METRICS, TEST_CODEC, Point, Results, compressai_file_names

DEFAULT_QUALITIES = (0.0, 2.0, 4.0, 6.0)
DEFAULT_BASELINES = ("x264", "x265", "svtav1")
DEFAULT_FRAMES = 32
DEFAULT_GOP = 32
AUTO_POINTS = 5  # points an automatic CRF sweep aims for (it keeps every point it measured on the way)
AUTO_CRF_FLOOR = 10  # automatic sweeps stop here: below it x264/x265/SVT-AV1 approach lossless
PSNR_EXACT = 100.0  # the PSNR a frame (or plane) decoded without any error counts as, so means stay finite
MIN_SIDE = 11  # MS-SSIM's window


@dataclass
class Sequence:
    name: str
    path: Path


@dataclass
class BenchOptions:
    qualities: list[float] = field(default_factory=lambda: list(DEFAULT_QUALITIES))
    baselines: list[str] = field(default_factory=lambda: list(DEFAULT_BASELINES))
    crfs: dict[str, list[int]] = field(default_factory=dict)  # fixed sweeps; other baselines are swept automatically
    frames: int = DEFAULT_FRAMES
    gop: int = DEFAULT_GOP
    pix_fmt: str = "yuv420p"
    device: str = "auto"
    model: str | None = None
    inter_model: str | None = None  # the P-frame model (default: the shipped one; --gop 1 codes all-intra)
    preset: str = "medium"  # vcodec's encoder preset (vcodec/refine.py)
    bitrates: list[float] = field(default_factory=list)  # bits/s: vcodec's points by rate control instead of qualities
    # More vcodec curves, as anchors of vcodec's BD-rates: "intra" (all-intra, the same qualities) or a P-frame
    # model (name or path; the same GOP), e.g. the ablation's variants.
    vcodec_anchors: list[str] = field(default_factory=list)
    method: str = bdrate.DEFAULT_METHOD
    min_overlap: float = bdrate.MIN_OVERLAP
    json: Path | None = None
    plot: Path | None = None
    overwrite: bool = False
    json_dir: Path | None = None  # one file per codec and curve, in the shape of CompressAI's published results


class Reporter:
    """What a running bench tells its caller; the command draws a progress bar with it. Units are frames coded
    (one for each frame encoded, one for each decoded)."""

    def plan(self, total: int) -> None:
        """Every check passed and coding starts: about `total` units to go."""

    def grow(self, units: int) -> None:
        """The estimate changed by `units` (an automatic CRF sweep took more or fewer points than planned)."""

    def advance(self, units: int, note: str = "") -> None:
        """`units` more are done; `note` says what is being coded now."""

    def point(self, point: Point) -> None:
        """A point is finished (and already in the JSON file, when there is one)."""


# ------------------------------------------------------------------------------------------------------- inputs
def _holds_frames(folder: Path) -> bool:
    return any(p.suffix.lower() == ".png" and p.is_file() for p in folder.iterdir())


def find_sequences(inputs: list[Path]) -> list[Sequence]:
    """Sequences of the inputs: a video or .y4m file is one; a folder of PNG frames is one; a folder of such
    folders (a dataset root like UVG/ or HEVC_B/) is one per sub-folder. Names are made unique."""
    found: list[Sequence] = []
    for path in map(Path, inputs):
        if not path.exists():
            raise InputError(f"input not found: {path}")
        if not path.is_dir():
            found.append(Sequence(path.stem, path))
        elif _holds_frames(path):
            found.append(Sequence(path.resolve().name, path))
        else:
            subs = sorted((d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".") and _holds_frames(d)),
                          key=lambda d: natural_key(d.name))
            if not subs:
                raise InputError(f"{path} holds neither PNG frames nor sequence folders of PNG frames")
            found += [Sequence(d.name, d) for d in subs]
    seen: dict[str, int] = {}
    for s in found:
        seen[s.name] = seen.get(s.name, 0) + 1
        if seen[s.name] > 1:
            s.name = f"{s.name} ({seen[s.name]})"
    return found


# ------------------------------------------------------------------------------------------------------ options
def parse_qualities(text: str) -> list[float]:
    from vcodec import quality as Q

    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"--qualities: '{text}' is not a comma-separated list of numbers") from None
    if not values:
        raise InputError("--qualities: give at least one quality")
    bad = [q for q in values if not Q.MIN_QUALITY <= q <= Q.MAX_QUALITY]
    if bad:
        raise InputError(f"--qualities: {bad[0]:g} is outside {Q.MIN_QUALITY}..{Q.MAX_QUALITY}")
    return sorted(set(values))


def _parse_bitrates(text: str | None) -> list[float]:
    from vcodec.rate_control import parse_bitrate

    return [parse_bitrate(t) for t in text.split(",") if t.strip()] if text else []


def parse_baselines(text: str) -> list[str]:
    if text.strip().lower() in ("", "none"):
        return []
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    return list(dict.fromkeys(names))


def parse_crfs(items: list[str], baselines: list[str]) -> dict[str, list[int]]:
    """`22,27,32` (every baseline) or `x265=20,26,32` (one), repeatable."""
    out: dict[str, list[int]] = {}
    for item in items:
        name, _, values = item.rpartition("=")
        targets = [name.strip().lower()] if name else baselines
        for t in targets:
            if t not in baselines:
                raise InputError(f"--crfs: '{t}' is not among the baselines ({', '.join(baselines) or 'none'})")
        try:
            crfs = sorted({int(v) for v in values.split(",") if v.strip()})
        except ValueError:
            raise InputError(f"--crfs: '{item}' is not a list of whole numbers like 22,27,32 or x265=22,27,32") from None
        if not crfs:
            raise InputError(f"--crfs: '{item}' lists no CRF")
        for t in targets:
            out[t] = crfs
    return out


def _check_options(options: BenchOptions) -> dict:
    """Everything a user can get wrong, before any frame is coded. Returns the baselines' specs by name."""
    from vcodec import baselines as B

    if not options.qualities:
        raise InputError("--qualities: give at least one quality")
    if options.frames < 1:
        raise InputError("--frames must be at least 1")
    if options.gop < 1:
        raise InputError("--gop must be at least 1")
    from vcodec.refine import PRESETS

    if options.preset not in PRESETS:
        raise InputError(f"--preset must be one of {', '.join(PRESETS)}")
    if options.method not in bdrate.METHODS:
        raise InputError(f"--bd-method must be one of {', '.join(bdrate.METHODS)}")
    if not 0 <= options.min_overlap <= 1:
        raise InputError("--min-overlap must be in 0..1")
    specs = {name: B.check_available(name, options.pix_fmt) for name in options.baselines}
    for name, crfs in options.crfs.items():
        spec = specs.get(name)
        if spec is None:
            raise InputError(f"--crfs: '{name}' is not among the baselines")
        bad = [c for c in crfs if not spec.crf_min <= c <= spec.crf_max]
        if bad:
            raise InputError(f"--crfs: {name} takes CRFs {spec.crf_min}..{spec.crf_max}, got {bad[0]}")
    if specs:
        bdrate.require_package()
    for path, what in ((options.json, "--json"), (options.plot, "--plot")):
        if path is not None:
            if path.is_dir():
                raise InputError(f"{what} {path} is a folder")
            check_output(path, options.overwrite, what=what)
    if options.json and options.plot and options.json.resolve() == options.plot.resolve():
        raise InputError("--json and --plot name the same file")
    if options.json_dir is not None:
        folder = options.json_dir
        if folder.exists() and not folder.is_dir():
            raise InputError(f"--json-dir {folder} is a file, not a folder")
        parent = folder.parent if str(folder.parent) else Path(".")
        if not folder.exists() and not parent.is_dir():
            raise OutputError(f"cannot write --json-dir {folder}: folder {parent} does not exist")
    if options.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            from matplotlib import pyplot as plt
        except ImportError:
            raise InputError("--plot needs matplotlib: pip install 'vcodec[bench]'") from None
        formats = plt.figure().canvas.get_supported_filetypes()
        plt.close("all")
        if options.plot.suffix.lstrip(".").lower() not in formats:
            raise InputError(f"--plot: cannot write '{options.plot.suffix}' files (use .png, .pdf or .svg)")
    return specs


# ---------------------------------------------------------------------------------------------------- measuring
class Scores:
    """Quality of decoded frames against the source, frame by frame; `means()` averages them over the sequence."""

    def __init__(self, source: list):
        self.source = source
        self.rgb: list[float] = []
        self.yuv: list[float] = []
        self.ms_ssim: list[float] = []

    @staticmethod
    def _tensor(rgb):
        import torch

        return torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div_(255)

    def add(self, index: int, decoded) -> None:
        from vcodec import metrics

        a, b = self._tensor(self.source[index]), self._tensor(decoded)
        self.rgb.append(min(PSNR_EXACT, metrics.psnr_from_mse(float(metrics.mse(a, b)[0]))))
        self.yuv.append(metrics.psnr_yuv420(a, b, exact=PSNR_EXACT)["yuv"])
        self.ms_ssim.append(float(metrics.ms_ssim(a, b)[0]))

    def means(self) -> tuple[float, float, float]:
        if len(self.rgb) != len(self.source):
            raise RuntimeError(f"{len(self.rgb)} frames decoded for {len(self.source)} coded")
        n = len(self.rgb)
        return sum(self.rgb) / n, sum(self.yuv) / n, sum(self.ms_ssim) / n


@dataclass
class LoadedSequence:
    name: str
    frames: list  # uint8 RGB (H, W, 3)
    fps: Fraction
    colour: object  # container.Colour

    @property
    def width(self) -> int:
        return self.frames[0].shape[1]

    @property
    def height(self) -> int:
        return self.frames[0].shape[0]


class VcodecRunner:
    """vcodec through its real stream path: VideoEncoder + StreamWriter to a .hfc file, then StreamReader + a
    VideoDecoder to decode that file, as `vcodec encode` and `vcodec decode` do; I- and P-frames as the GOP says."""

    def __init__(self, bundle, device, gop: int, work: Path, stem=None, codec: str = TEST_CODEC, preset: str = "medium"):
        self.preset = preset
        self.bundle = bundle
        self.device = device
        self.gop = gop if stem is not None else 1
        self.stem = stem
        self.work = work
        self.codec = codec

    def warm_up(self, seq: LoadedSequence, quality: float) -> None:
        """Two untimed frames per sequence (an I and, with P-frames, a P): first calls pay for allocations."""
        from vcodec.codec import VideoDecoder, VideoEncoder

        encoder = VideoEncoder(self.bundle, self.device, self.gop, self.stem, self.preset)
        decoder = VideoDecoder(self.bundle, self.device, self.stem)
        for rgb in seq.frames[: 2 if self.gop != 1 else 1]:
            decoder.decode(encoder.encode(rgb, quality), seq.width, seq.height)

    def point(self, seq: LoadedSequence, quality, advance: Callable[[int], None]) -> Point:
        """One point: at a quality (a number), or at a rate_control.Target (--bitrates: a quality per GOP)."""
        from vcodec import container as C
        from vcodec.codec import VideoDecoder, VideoEncoder, stream_header
        from vcodec.rate_control import QualityPlanner, encode_at_target

        header = stream_header(self.bundle, seq.width, seq.height, seq.fps, seq.colour, self.gop, self.stem)
        path = self.work / "point.hfc"  # one point at a time
        encoder = VideoEncoder(self.bundle, self.device, self.gop, self.stem, self.preset)
        t0 = time.perf_counter()
        with C.StreamWriter(path, header) as writer:

            def emit(rgb, packet) -> int:
                advance(1)
                return writer.write(packet)

            if isinstance(quality, (int, float)):
                for rgb in seq.frames:
                    emit(rgb, encoder.encode(rgb, quality))
            else:
                planner = QualityPlanner(encoder, quality, seq.width, seq.height, header.fps, header.size)
                encode_at_target(encoder, planner, seq.frames, self.gop, emit)
        encode_seconds = time.perf_counter() - t0
        nbytes = path.stat().st_size

        decoder = VideoDecoder(self.bundle, self.device, self.stem)
        scores = Scores(seq.frames)
        decode_seconds = 0.0
        t0 = time.perf_counter()
        with C.StreamReader(path) as reader:
            packets = reader.packets()
            h = reader.header
            index = 0
            while True:
                packet = next(packets, None)
                if packet is None:
                    decode_seconds += time.perf_counter() - t0
                    break
                rgb = decoder.decode(packet, h.width, h.height)
                decode_seconds += time.perf_counter() - t0
                scores.add(index, rgb)  # not timed
                advance(1)
                index += 1
                t0 = time.perf_counter()
        path.unlink()
        n = len(seq.frames)
        psnr_rgb, psnr_yuv, ms_ssim = scores.means()
        split = {
            "encoding_network_time": encoder.timings.network / n, "encoding_entropy_time": encoder.timings.entropy / n,
            "decoding_network_time": decoder.timings.network / n, "decoding_entropy_time": decoder.timings.entropy / n,
        }
        setting, order = ((f"q={quality:g}", quality) if isinstance(quality, (int, float)) else
                          (f"b={quality.value / 1000:g}k", quality.value))
        return Point(self.codec, seq.name, setting, order, n, nbytes * 8 / (seq.width * seq.height * n),
                     psnr_rgb, psnr_yuv, ms_ssim, encode_seconds / n, decode_seconds / n, split)


def baseline_point(spec, seq: LoadedSequence, crf: int, gop: int, pix_fmt: str) -> Point:
    from vcodec import baselines as B

    scores = Scores(seq.frames)
    coded = B.code(spec, seq.frames, crf, gop, pix_fmt, seq.fps, on_frame=scores.add)
    n = len(seq.frames)
    psnr_rgb, psnr_yuv, ms_ssim = scores.means()
    return Point(spec.name, seq.name, f"crf={crf}", -crf, n, coded.bits / (seq.width * seq.height * n),
                 psnr_rgb, psnr_yuv, ms_ssim, coded.encode_seconds / n, coded.decode_seconds / n)


def auto_crfs(spec, measure: Callable[[int], Point], target: list[Point], points: int = AUTO_POINTS) -> None:
    """Measure the baseline at CRFs that cover `target`'s bpp and PSNR-RGB range (see the module doc)."""
    done: dict[int, Point] = {}

    def at(crf: int) -> Point:
        if crf not in done:
            done[crf] = measure(crf)
        return done[crf]

    lattice, floor, ceiling = spec.crf_lattice, max(spec.crf_min, AUTO_CRF_FLOOR), spec.crf_max
    lo_bpp, hi_bpp = min(p.bpp for p in target), max(p.bpp for p in target)
    lo_db, hi_db = min(p.psnr_rgb for p in target), max(p.psnr_rgb for p in target)

    def steps(crf_change: float) -> int:
        """A CRF move as a whole number of lattice steps: at least one, at most two rate halvings."""
        crf_change = min(crf_change, 2 * spec.crf_per_halving)
        return lattice * max(1, math.ceil(crf_change / lattice))

    def walk(direction: int) -> int:
        """From the start CRF towards more bits (-1) or fewer (+1) until the baseline gets past vcodec's extreme
        rate and quality that way, or hits the CRF limit. Returns the last CRF."""
        crf, limit = spec.crf_center, (floor if direction < 0 else ceiling)
        while crf != limit:
            p = at(crf)
            if direction < 0:
                rate_gap, db_gap = math.log2(hi_bpp / max(p.bpp, 1e-9)), hi_db - p.psnr_rgb
            else:
                rate_gap, db_gap = math.log2(p.bpp / max(lo_bpp, 1e-9)), p.psnr_rgb - lo_db
            need = max(0.0, spec.crf_per_halving * rate_gap, db_gap / spec.db_per_crf)
            if need == 0:
                break
            crf = min(ceiling, max(floor, crf + direction * steps(need)))
        at(crf)
        return crf

    top, bottom = walk(-1), walk(+1)
    spacing = max(lattice, lattice * round((bottom - top) / max(1, points - 1) / lattice))
    measured = sorted(done)
    for a, b in zip(measured, measured[1:]):  # fill gaps wider than the spacing with CRFs on the lattice
        on_lattice = [c for c in range(a + 1, b) if (c - spec.crf_center) % lattice == 0]
        gaps = math.ceil((b - a) / spacing)
        for k in range(1, gaps):
            if on_lattice:
                at(min(on_lattice, key=lambda c: abs(c - (a + k * (b - a) / gaps))))


# --------------------------------------------------------------------------------------------------------- run
def _setting(q) -> str:
    return f"q={q:g}" if isinstance(q, (int, float)) else f"b={q.value / 1000:g}k"


def _model_label(bundle) -> str:
    import json

    try:
        step = json.loads(bundle.metadata.get("vcodec.info", "{}")).get("step")
    except ValueError:
        step = None
    return f"{bundle.name} (sha256 {bundle.hash_hex[:16]}" + (f", training step {step})" if step is not None else ")")


def _probe(seq: Sequence, frames: int) -> int:
    """Check that a sequence can be benched before anything is coded; returns about how many frames it will give."""
    from vcodec.media import check_picture_size, open_source

    with open_source(seq.path) as source:
        info = source.info
    if info.width < MIN_SIDE or info.height < MIN_SIDE:
        raise InputError(f"{seq.path}: {info.width}x{info.height} is too small to bench (MS-SSIM needs {MIN_SIDE}x{MIN_SIDE})")
    check_picture_size(info.width, info.height, seq.path)  # the encoder's own limit, before any baseline runs
    return min(frames, info.frame_count) if info.frame_count else frames


def _load(seq: Sequence, frames: int) -> LoadedSequence:
    from vcodec.media import open_source

    with open_source(seq.path) as source:
        info = source.info
        pictures = list(source.frames(0, frames))
    if not pictures:
        raise InputError(f"{seq.path} has no frames")
    return LoadedSequence(seq.name, pictures, info.fps, info.colour)


def run(inputs: list[Path], options: BenchOptions, reporter: Reporter | None = None) -> Results:
    """Bench every sequence of `inputs`. With options.json set, the file is rewritten after every point, so an
    interrupted run keeps what it finished; Ctrl-C raises BenchInterrupted, which carries the results so far."""
    import torch

    from vcodec import baselines as B
    from vcodec import weights
    from vcodec.codec import choose_inter_model, pick_device

    reporter = reporter or Reporter()
    specs = _check_options(options)
    sequences = find_sequences(inputs)
    estimates = [_probe(s, options.frames) for s in sequences]
    device = pick_device(options.device)
    bundle = weights.load(options.model or weights.DEFAULT_MODEL, device)
    stem, _ = choose_inter_model(bundle, options.inter_model, options.gop, device)
    structure = (f"I+P (STEM {_model_label(stem)}), GOP {options.gop}" if stem is not None else "all-intra")
    structure += f", preset {options.preset}"
    descriptions = {TEST_CODEC: (
        f"vcodec {_model_label(bundle)}, {structure}, quality q; device {device}, torch threads "
        f"{torch.get_num_threads()}; times in seconds per frame (after untimed warm-up frames)"
    )}
    anchors = []  # (label, P-frame model or None)
    for anchor in options.vcodec_anchors:
        if anchor == "intra":
            anchors.append(("vcodec-intra", None))
            descriptions["vcodec-intra"] = f"vcodec {_model_label(bundle)}, all-intra, the same qualities"
            continue
        if anchor == "fixed-q":  # what --bitrates costs against one quality for the whole stream
            anchors.append(("vcodec-fixed-q", stem))
            descriptions["vcodec-fixed-q"] = f"vcodec, the same models and GOP at the fixed qualities {options.qualities}"
            continue
        other = weights.load_stem(anchor, device)
        if other.intra_sha256 != bundle.sha256:
            raise InputError(f"--vcodec-anchor {anchor}: that P-frame model belongs to another intra model")
        label = f"vcodec-{other.name}"
        anchors.append((label, other))
        descriptions[label] = f"vcodec {_model_label(bundle)}, I+P (STEM {_model_label(other)}, variant " \
                              f"{other.config.variant}), GOP {options.gop}, the same qualities"
    for name, spec in specs.items():
        sweep = f"CRFs {','.join(map(str, options.crfs[name]))}" if name in options.crfs else "automatic CRF sweep"
        descriptions[name] = f"{spec.describe(options.gop, options.pix_fmt)}, {sweep}; times in seconds per frame"
    if options.json_dir is not None and not options.overwrite:
        for name in compressai_file_names(list(descriptions), [s.name for s in sequences]).values():
            if (options.json_dir / name).exists():
                raise InputError(f"{options.json_dir / name} exists (use -y to overwrite)")
    results = Results(descriptions, options.method, options.min_overlap)
    planned = {name: len(options.crfs.get(name, ())) or AUTO_POINTS + 2 for name in specs}
    from vcodec.rate_control import Target

    settings = [Target("bitrate", b) for b in options.bitrates] or list(options.qualities)
    per_frame = len(settings) * (1 + len(anchors)) + sum(planned.values())
    reporter.plan(sum(2 * n * per_frame for n in estimates))

    def save() -> None:
        if options.json:
            results.write_json(options.json)
        if options.json_dir:
            results.write_json_dir(options.json_dir)

    def record(point: Point) -> None:
        results.add(point)
        save()
        reporter.point(point)

    try:
        with tempfile.TemporaryDirectory(prefix="vcodec-bench-") as work:
            runner = VcodecRunner(bundle, device, options.gop, Path(work), stem, preset=options.preset)
            for seq_in, estimate in zip(sequences, estimates):
                seq = _load(seq_in, options.frames)
                n = len(seq.frames)
                reporter.grow(2 * (n - estimate) * per_frame)
                results.start_sequence(seq.name, seq.width, seq.height)
                runner.warm_up(seq, options.qualities[0])
                for q in settings:
                    record(runner.point(seq, q, lambda units: reporter.advance(units, f"{seq.name} vcodec {_setting(q)}")))
                for label, other in anchors:
                    anchor_runner = VcodecRunner(bundle, device, options.gop, Path(work), other, label, options.preset)
                    anchor_runner.warm_up(seq, options.qualities[0])
                    for q in (options.qualities if label in ("vcodec-intra", "vcodec-fixed-q") else settings):
                        record(anchor_runner.point(seq, q, lambda units: reporter.advance(units, f"{seq.name} {label} q={q:g}")))
                target = results.curve(TEST_CODEC, seq.name)
                for name, spec in specs.items():
                    B.warm_up(spec, seq.frames[0], options.pix_fmt)
                    measured = 0

                    def measure(crf: int) -> Point:
                        nonlocal measured
                        reporter.advance(0, f"{seq.name} {name} crf={crf}")
                        point = baseline_point(spec, seq, crf, options.gop, options.pix_fmt)
                        measured += 1
                        if measured > planned[name]:
                            reporter.grow(2 * n)
                        reporter.advance(2 * n)
                        record(point)
                        return point

                    if name in options.crfs:
                        for crf in options.crfs[name]:
                            measure(crf)
                    else:
                        auto_crfs(spec, measure, target)
                    reporter.grow(-2 * n * max(0, planned[name] - measured))
                results.finish_sequence(seq.name)
                save()
    except KeyboardInterrupt:
        raise BenchInterrupted(results) from None
    if options.plot:
        results.plot(options.plot)
    return results


class BenchInterrupted(Interrupted):
    """Ctrl-C during a bench: carries the results finished so far (already in the --json file, if one was asked)."""

    def __init__(self, results: Results):
        super().__init__(f"interrupted after {len(results.points)} finished points")
        self.results = results


# ------------------------------------------------------------------------------------------------------ report
def _ms(value: float) -> str:
    return f"{value * 1000:.0f}" if value >= 0.0095 else f"{value * 1000:.1f}"


def _sequence_table(results: Results, sequence: str) -> Table:
    size = results.sizes.get(sequence)
    frames = next((p.frames for p in results.points if p.sequence == sequence), 0)
    shape = f"{size[0]}x{size[1]}, {frames} frames" if size else f"(mean of {len(results.finished)} sequences)"
    title = f"{sequence}  {shape}"
    table = Table("codec", "setting", "bpp", "PSNR-RGB", "PSNR-YUV", "MS-SSIM", "enc fps", "dec fps",
                  "enc ms net+ent", "dec ms net+ent", title=title, title_justify="left", box=None)
    for codec in results.descriptions:
        for p in results.curve(codec, sequence):
            s = p.split
            table.add_row(
                codec, p.setting, f"{p.bpp:.4f}", f"{p.psnr_rgb:.2f}", f"{p.psnr_yuv:.2f}", f"{p.ms_ssim_rgb:.4f}",
                f"{p.encode_fps:.2f}", f"{p.decode_fps:.2f}",
                f"{_ms(s['encoding_network_time'])}+{_ms(s['encoding_entropy_time'])}" if s else "",
                f"{_ms(s['decoding_network_time'])}+{_ms(s['decoding_entropy_time'])}" if s else "",
            )
    return table


_LABELS = {"psnr-rgb": "PSNR-RGB", "psnr-yuv": "PSNR-YUV"}


def _span(value: bdrate.BDRate) -> str:
    if not (value.anchor_range and value.test_range):
        return ""
    (a0, a1), (t0, t1) = value.anchor_range, value.test_range
    return f"{a0:.1f}..{a1:.1f} | {t0:.1f}..{t1:.1f} dB"


def _bd_table(results: Results) -> Table:
    title = (f"BD-rate of vcodec against each anchor ({results.method}; negative = vcodec needs fewer bits; n/a where "
             f"the curves' common PSNR range is under {100 * results.min_overlap:.0f} % of the shorter one's)")
    table = Table("sequence", "anchor", *(f"BD-rate {_LABELS[m]}" for m in METRICS), "PSNR-RGB span anchor | vcodec",
                  "note", title=title, title_justify="left", box=None)
    for sequence in results.finished:
        for b in results.baselines:
            values = [results.bd_rate(sequence, b, m) for m in METRICS]
            notes = [f"{_LABELS[m]}: {v.reason}" for m, v in zip(METRICS, values) if v.reason]
            dropped = max(v.dropped for v in values)
            if dropped:
                notes.append(f"{dropped} point(s) left out: PSNR did not rise with rate")
            table.add_row(sequence, b, *(v.text() for v in values), _span(values[0]), "; ".join(notes))
    if len(results.finished) > 1:
        total = len(results.finished)
        for b in results.baselines:
            cells = []
            for m in METRICS:
                mean, count = results.bd_rate_average(b, m)
                cells.append("n/a" if mean is None else f"{mean:+.1f} %" + ("" if count == total else f" ({count} of {total})"))
            table.add_row(AVERAGE, b, *cells, "", "mean of the per-sequence BD-rates")
    return table


def print_report(results: Results, console: Console) -> None:
    for sequence in results.sequences:
        if any(p.sequence == sequence for p in results.points):
            console.print(_sequence_table(results, sequence))
            console.print()
    if len(results.finished) > 1:
        console.print(_sequence_table(results, AVERAGE))
        console.print()
    if results.baselines and results.finished:
        console.print(_bd_table(results))


class _BarReporter(Reporter):
    """A rich progress bar on stderr over the whole run, started once the run is planned (after every check on the
    inputs passed, so a usage error stays one line), and a log line above it per finished point."""

    def __init__(self, console: Console):
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=console, redirect_stdout=False, redirect_stderr=False)
        self.task = None
        self.total = 0

    def plan(self, total: int) -> None:
        self.total = total
        self.bar.start()
        self.task = self.bar.add_task("bench", total=total, note="")

    def grow(self, units: int) -> None:
        self.total += units
        self.bar.update(self.task, total=self.total)

    def advance(self, units: int, note: str = "") -> None:
        self.bar.update(self.task, advance=units, **({"note": note} if note else {}))

    def point(self, p: Point) -> None:
        self.bar.console.print(
            f"{p.sequence} {p.codec} {p.setting}: {p.bpp:.4f} bpp, PSNR-RGB {p.psnr_rgb:.2f} dB, PSNR-YUV {p.psnr_yuv:.2f} dB, "
            f"MS-SSIM {p.ms_ssim_rgb:.4f}, enc {p.encode_fps:.2f} fps, dec {p.decode_fps:.2f} fps", highlight=False)

    def close(self) -> None:
        if self.task is not None:
            self.bar.stop()
            self.task = None


def register(app: typer.Typer) -> None:
    """Add `vcodec bench` to the command line."""

    @app.command("bench")
    def bench(
        inputs: List[Path] = typer.Argument(..., help="Videos, .y4m files, folders of PNG frames, or dataset roots (a folder of such folders)."),
        qualities: str = typer.Option(",".join(f"{q:g}" for q in DEFAULT_QUALITIES), "--qualities", help="vcodec qualities, comma-separated (0..7)."),
        baselines: str = typer.Option(",".join(DEFAULT_BASELINES), "--baselines", help="Anchors among x264, x265, svtav1 (comma-separated), or 'none'."),
        crfs: List[str] = typer.Option([], "--crfs", help="Fixed CRFs instead of the automatic sweep: '22,27,32,37' for every baseline or 'x265=22,27,32' for one (repeatable)."),
        frames: int = typer.Option(DEFAULT_FRAMES, "--frames", help="Frames per sequence (from the first)."),
        gop: int = typer.Option(DEFAULT_GOP, "--gop", help="Distance between I-frames, for vcodec and the baselines (1: all-intra)."),
        pix_fmt: str = typer.Option("yuv420p", "--pix-fmt", help="Baselines' pixel format: yuv420p or yuv444p."),
        bd_method: str = typer.Option(bdrate.DEFAULT_METHOD, "--bd-method", help="BD-rate interpolation: akima or pchip."),
        min_overlap: float = typer.Option(bdrate.MIN_OVERLAP, "--min-overlap", help="BD-rates need the curves' common PSNR range to be at least this part of the shorter curve's (else n/a)."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Write results (CompressAI format) here, rewritten after every point."),
        json_dir: Optional[Path] = typer.Option(None, "--json-dir", help="Also write one file per codec (its average curve) and per codec and sequence, as CompressAI publishes results and its plotter reads them."),
        plot: Optional[Path] = typer.Option(None, "--plot", help="Write an RD plot (PNG, PDF or SVG) here."),
        device: str = typer.Option("auto", "--device", help="vcodec's device: auto, cpu or cuda."),
        model: Optional[str] = typer.Option(None, "--model", help="Model name or .safetensors path (default: the shipped one)."),
        inter_model: Optional[str] = typer.Option(None, "--inter-model", help="P-frame model name or .safetensors path (default: the shipped one)."),
        preset: str = typer.Option("medium", "--preset", help="vcodec's encoder preset: medium, slow, slower or veryslow."),
        bitrates: Optional[str] = typer.Option(None, "--bitrates", help="vcodec at these average bitrates (rate control, e.g. 300k,600k,1.2M) instead of --qualities; --vcodec-anchor fixed-q adds the fixed-quality curve."),
        vcodec_anchors: List[str] = typer.Option([], "--vcodec-anchor", help="Another vcodec curve to measure as an anchor: 'intra' (all-intra at the same qualities) or a P-frame model (repeatable)."),
        overwrite: bool = typer.Option(False, "-y", "--overwrite", help="Overwrite the --json and --plot files if they exist."),
    ) -> None:
        """Rate-distortion and speed of vcodec against x264, x265 and SVT-AV1, with BD-rates."""
        names = parse_baselines(baselines)
        options = BenchOptions(parse_qualities(qualities), names, parse_crfs(crfs, names), frames, gop, pix_fmt,
                               device, model, inter_model, preset, _parse_bitrates(bitrates), vcodec_anchors,
                               bd_method, min_overlap, json_path, plot, overwrite, json_dir=json_dir)
        # Tables are results: keep them whole when stdout is a file or a pipe (a terminal keeps its own width).
        out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 180)
        reporter = _BarReporter(Console(stderr=True, soft_wrap=True))
        started = time.strftime("%Y-%m-%d %H:%M")
        try:
            results = run(inputs, options, reporter)
        except BenchInterrupted as e:
            reporter.close()
            print_report(e.results, out)
            saved = " and ".join(str(p) for p in (json_path, json_dir) if p)
            kept = f"; they are in {saved}" if saved and e.results.points else ""
            raise Interrupted(f"{e}{kept}") from None
        finally:
            reporter.close()
        out.print(f"vcodec bench, {started}: {results.descriptions[TEST_CODEC]}", highlight=False)
        print_report(results, out)
        for path in (json_path, json_dir, plot):
            if path:
                out.print(f"wrote {path}", highlight=False)
