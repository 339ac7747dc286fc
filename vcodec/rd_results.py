"""Rate-distortion results of a bench: measured points, per-sequence and average curves, BD-rates, the JSON file
(CompressAI's results format), a folder of files in the shape of CompressAI's published results, and the RD plot.

A point is one codec at one setting on one sequence. Its numbers are means over the sequence's frames (PSNR is the
mean of per-frame PSNRs, as CompressAI and most papers compute it), bpp is the whole stream's bits over all pixels
of all frames, and times are seconds per frame. The "average" curve of a codec averages, setting by setting, the
sequences that finished and share that setting; the average BD-rate is the mean of the per-sequence BD-rates (the
JVET convention), over the sequences where one could be computed.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vcodec import bdrate
from vcodec.errors import OutputError

TEST_CODEC = "vcodec"
AVERAGE = "average"
METRICS = ("psnr-rgb", "psnr-yuv")  # the qualities BD-rates are computed on
RESULT_KEYS = ("bpp", "psnr-rgb", "psnr-yuv", "ms-ssim-rgb", "encoding_time", "decoding_time")
# vcodec's split of its time between the networks and entropy coding, seconds per frame
SPLIT_KEYS = ("encoding_network_time", "encoding_entropy_time", "decoding_network_time", "decoding_entropy_time")


@dataclass
class Point:
    codec: str
    sequence: str
    setting: str  # "q=4", "crf=27"
    order: float  # sorts a codec's settings from fewest to most bits
    frames: int
    bpp: float
    psnr_rgb: float
    psnr_yuv: float
    ms_ssim_rgb: float
    encoding_time: float  # seconds per frame
    decoding_time: float
    split: dict[str, float] = field(default_factory=dict)  # SPLIT_KEYS, vcodec only

    @property
    def encode_fps(self) -> float:
        return 1 / self.encoding_time if self.encoding_time > 0 else math.inf

    @property
    def decode_fps(self) -> float:
        return 1 / self.decoding_time if self.decoding_time > 0 else math.inf

    def value(self, key: str) -> float:
        return {"bpp": self.bpp, "psnr-rgb": self.psnr_rgb, "psnr-yuv": self.psnr_yuv, "ms-ssim-rgb": self.ms_ssim_rgb,
                "encoding_time": self.encoding_time, "decoding_time": self.decoding_time}.get(key, self.split.get(key))


def _mean_point(points: list[Point]) -> Point:
    first = points[0]

    def mean(get) -> float:
        return sum(get(p) for p in points) / len(points)

    split = {k: mean(lambda p: p.split[k]) for k in first.split if all(k in p.split for p in points)}
    return Point(first.codec, AVERAGE, first.setting, first.order, sum(p.frames for p in points),
                 mean(lambda p: p.bpp), mean(lambda p: p.psnr_rgb), mean(lambda p: p.psnr_yuv),
                 mean(lambda p: p.ms_ssim_rgb), mean(lambda p: p.encoding_time), mean(lambda p: p.decoding_time), split)


class Results:
    """Everything a bench measured so far, in the order it was measured."""

    def __init__(self, descriptions: dict[str, str], method: str = bdrate.DEFAULT_METHOD,
                 min_overlap: float = bdrate.MIN_OVERLAP):
        self.descriptions = descriptions  # codec -> description; TEST_CODEC first
        self.method = method
        self.min_overlap = min_overlap
        self.points: list[Point] = []
        self.sequences: list[str] = []
        self.finished: list[str] = []  # sequences whose every codec is done: the only ones averaged
        self.sizes: dict[str, tuple[int, int]] = {}

    def start_sequence(self, name: str, width: int, height: int) -> None:
        self.sequences.append(name)
        self.sizes[name] = (width, height)

    def add(self, point: Point) -> None:
        self.points.append(point)

    def finish_sequence(self, name: str) -> None:
        self.finished.append(name)

    @property
    def baselines(self) -> list[str]:
        return [c for c in self.descriptions if c != TEST_CODEC]

    def curve(self, codec: str, sequence: str) -> list[Point]:
        if sequence == AVERAGE:
            return self.average_curve(codec)
        return sorted((p for p in self.points if p.codec == codec and p.sequence == sequence), key=lambda p: p.order)

    def average_curve(self, codec: str) -> list[Point]:
        if not self.finished:
            return []
        by_setting: dict[str, list[Point]] = {}
        for p in self.points:
            if p.codec == codec and p.sequence in self.finished:
                by_setting.setdefault(p.setting, []).append(p)
        shared = [ps for ps in by_setting.values() if len(ps) == len(self.finished)]
        return sorted((_mean_point(ps) for ps in shared), key=lambda p: p.order)

    def bd_rate(self, sequence: str, baseline: str, metric: str) -> bdrate.BDRate:
        """BD-rate of vcodec (test) against `baseline` (anchor) on one sequence, on PSNR-RGB or PSNR-YUV."""
        anchor, test = self.curve(baseline, sequence), self.curve(TEST_CODEC, sequence)
        return bdrate.bd_rate([p.bpp for p in anchor], [p.value(metric) for p in anchor],
                              [p.bpp for p in test], [p.value(metric) for p in test], self.method, self.min_overlap)

    def bd_rate_average(self, baseline: str, metric: str) -> tuple[float | None, int]:
        """Mean of the per-sequence BD-rates that could be computed, and how many there were."""
        values = [v.percent for s in self.finished if (v := self.bd_rate(s, baseline, metric)).percent is not None]
        return (sum(values) / len(values) if values else None), len(values)

    # ------------------------------------------------------------------------------------------------ the JSON
    def _entry(self, codec: str, sequence: str, points: list[Point]) -> dict:
        results = {k: [p.value(k) for p in points] for k in RESULT_KEYS}
        if codec == TEST_CODEC:
            results.update({k: [p.split.get(k) for p in points] for k in SPLIT_KEYS})
        entry = {"name": codec, "description": self.descriptions[codec], "sequence": sequence,
                 "settings": [p.setting for p in points], "frames": [p.frames for p in points], "results": results}
        if codec == TEST_CODEC and self.baselines:
            entry["bd_rate"] = self._bd_entry(sequence)
        return entry

    def _bd_entry(self, sequence: str) -> dict:
        out = {"method": self.method, "min_overlap": self.min_overlap, "anchors": {}}
        for b in self.baselines:
            row = {}
            for metric in METRICS:
                if sequence == AVERAGE:
                    mean, count = self.bd_rate_average(b, metric)
                    row[metric] = mean
                    row[f"{metric} sequences"] = count
                else:
                    value = self.bd_rate(sequence, b, metric)
                    row[metric] = value.percent
                    if value.reason:
                        row[f"{metric} note"] = value.note()
            out["anchors"][b] = row
        return out

    def to_json(self) -> list[dict]:
        """One object per (codec, sequence) measured so far, then one per codec for the average."""
        entries = []
        for sequence in self.sequences:
            for codec in self.descriptions:
                points = self.curve(codec, sequence)
                if points:
                    entries.append(self._entry(codec, sequence, points))
        if self.finished:
            for codec in self.descriptions:
                entries.append(self._entry(codec, AVERAGE, self.average_curve(codec)))
        return entries

    def write_json(self, path: Path) -> None:
        """Replace `path` atomically: a reader (or an interrupted bench) sees the old file or the new one."""
        text = json.dumps(_finite(self.to_json()), indent=1, allow_nan=False)
        write_atomically(path, text.encode())

    # ---------------------------------------------------------------------------- CompressAI's published shape
    def compressai_files(self) -> dict[str, dict]:
        """File name -> contents, one file per codec and curve in the shape of CompressAI's published result files
        (what `python -m compressai.utils.plot -f FILE` reads): `name`, `description` and `results`, a dict of
        equal-length lists (bpp, psnr-rgb, ms-ssim-rgb, ... one value per setting, fewest bits first). The average
        curve is there once a sequence has finished; a sequence's own as soon as it has a point."""
        names = compressai_file_names(list(self.descriptions), self.sequences)
        files = {}
        for (codec, sequence), name in names.items():
            points = self.curve(codec, sequence)
            if not points:
                continue
            entry = self._entry(codec, sequence, points)
            if sequence == AVERAGE:
                label, what = codec, f"average of {len(self.finished)} sequence{'s' if len(self.finished) != 1 else ''}"
            else:
                label, what = f"{codec} ({sequence})", f"sequence {sequence}"
            description = f"{self.descriptions[codec]}; {what}; settings {', '.join(entry['settings'])}"
            files[name] = {"name": label, "description": description, "results": entry["results"]}
        return files

    def write_json_dir(self, folder: Path) -> None:
        """Write every file of compressai_files() into `folder` (made if missing), each one atomically."""
        try:
            folder.mkdir(exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot write {folder}: {e.strerror or e}") from None
        for name, contents in self.compressai_files().items():
            text = json.dumps(_finite(contents), indent=1, allow_nan=False)
            write_atomically(folder / name, text.encode())

    # ------------------------------------------------------------------------------------------------ the plot
    def plot(self, path: Path) -> None:
        """PSNR-RGB and PSNR-YUV against bpp, one curve per codec: the average curves, or the only sequence's."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        sequence = self.finished[0] if len(self.finished) == 1 else AVERAGE
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
        for ax, metric, label in zip(axes, METRICS, ("PSNR-RGB (dB)", "PSNR-YUV 6:1:1 (dB)")):
            for codec in self.descriptions:
                points = self.curve(codec, sequence)
                if points:
                    points = sorted(points, key=lambda p: p.bpp)
                    ax.plot([p.bpp for p in points], [p.value(metric) for p in points], "o-" if codec == TEST_CODEC else ".--",
                            label=codec)
            ax.set_xscale("log")  # codecs' rates here span two orders of magnitude
            ax.set_xlabel("bits per pixel (log scale)")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            ax.legend()
        title = sequence if sequence != AVERAGE else f"average of {len(self.finished)} sequences"
        fig.suptitle(f"Rate-distortion: {title}")
        fig.tight_layout()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=120)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            plt.close(fig)
            Path(tmp).unlink(missing_ok=True)


def compressai_file_names(codecs: list[str], sequences: list[str]) -> dict[tuple[str, str], str]:
    """File names of the per-codec results folder: `<codec>.json` for a codec's average curve, `<codec>-<sequence>.json`
    for one sequence's, in file-system-safe characters. Names are given in a fixed order (averages, then sequences as
    they were started) and a name already taken gets a number, so "vcodec" on sequence "intra" never overwrites the
    average of the codec "vcodec-intra", and every rewrite of a growing bench keeps its names."""
    names: dict[tuple[str, str], str] = {}
    taken: set[str] = set()

    def claim(key: tuple[str, str], stem: str) -> None:
        name, k = f"{stem}.json", 1
        while name.lower() in taken:  # case-insensitive file systems count too
            k += 1
            name = f"{stem}-{k}.json"
        taken.add(name.lower())
        names[key] = name

    for codec in codecs:
        claim((codec, AVERAGE), _safe(codec))
    for sequence in sequences:
        for codec in codecs:
            claim((codec, sequence), f"{_safe(codec)}-{_safe(sequence)}")
    return names


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "_"


def _finite(value):
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def validate(entries, complete: bool = True) -> list[str]:
    """What is wrong with a results file's contents (empty when it has the documented format). A `complete` file
    (a bench that ran to the end) also has an average entry per codec."""
    problems = []
    if not isinstance(entries, list):
        return ["the top level is not a list"]
    for i, e in enumerate(entries):
        where = f"entry {i}"
        if not isinstance(e, dict):
            problems.append(f"{where} is not an object")
            continue
        for key, kind in (("name", str), ("description", str), ("sequence", str), ("results", dict)):
            if not isinstance(e.get(key), kind):
                problems.append(f"{where}: '{key}' missing or not a {kind.__name__}")
        results = e.get("results")
        if not isinstance(results, dict):
            continue
        lengths = set()
        for key in RESULT_KEYS:
            values = results.get(key)
            if not isinstance(values, list):
                problems.append(f"{where}: results['{key}'] missing or not a list")
                continue
            lengths.add(len(values))
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                problems.append(f"{where}: results['{key}'] holds a value that is not a number")
        if len(lengths) > 1:
            problems.append(f"{where}: results lists differ in length ({sorted(lengths)})")
    names = {(e.get("name"), e.get("sequence")) for e in entries if isinstance(e, dict)}
    for name in {n for n, _ in names} if complete else ():
        if (name, AVERAGE) not in names:
            problems.append(f"codec '{name}' has no '{AVERAGE}' entry")
    return problems
