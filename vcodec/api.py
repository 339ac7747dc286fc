"""The Python API behind the command line: encode(), decode(), probe() (and vcodec.open, vcodec/reader.py).

    import vcodec
    vcodec.encode("in.mp4", "out.hfc", quality=4)
    vcodec.decode("out.hfc", "back.mp4")
    info = vcodec.probe("out.hfc")
    with vcodec.open("out.hfc") as s:
        frame = s[40]
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from vcodec import container as C
from vcodec import quality as Q
from vcodec.errors import DamagedStream, InputError
from vcodec.media import check_picture_size, check_sink_path, open_sink, open_source
from vcodec.paths import check_output, named_path
from vcodec.reader import frame_at  # noqa: F401 - part of the API: the frame --ss picks in a stream without timestamps

if TYPE_CHECKING:  # torch is imported only when a command needs it
    from vcodec.rate_control import Target


@dataclass
class EncodeResult:
    frames: int
    bytes: int
    width: int
    height: int
    fps: Fraction
    seconds: float
    psnr: float | None = None  # mean PSNR-RGB over frames, when asked for
    timings: dict = field(default_factory=dict)
    gop: int = 1  # as recorded in the stream (0: only the first frame is an I-frame)
    inter_model: str | None = None  # the P-frame model, when the stream holds P-frames
    p_frames: int = 0
    audio: list[str] = field(default_factory=list)  # the codecs of the audio streams kept (copied as they were)
    qualities: list[float] = field(default_factory=list)  # each GOP's quality, when rate control chose them
    timed: bool = False  # the frames carry their own times: the source's frame rate varies
    display: C.Display | None = None  # the source's rotation / sample aspect ratio, passed through
    duration: Fraction | None = None  # seconds the stream lasts, as probe() counts them (None: frames / fps)

    @property
    def stream_seconds(self) -> Fraction:
        """How long the stream lasts: frames / fps, or for timed frames the last one's time and an average frame."""
        return self.duration if self.duration is not None else Fraction(self.frames) / self.fps

    @property
    def kbps(self) -> float:
        """The file's bitrate over the stream's real duration (what `vcodec info` reports)."""
        return self.bytes * 8 / 1000 / max(1e-9, float(self.stream_seconds))

    @property
    def bpp(self) -> float:
        return self.bytes * 8 / max(1, self.width * self.height * self.frames)


@dataclass
class DecodeResult:
    frames: int
    width: int
    height: int
    fps: Fraction
    seconds: float
    timings: dict = field(default_factory=dict)
    start: int = 0  # the first frame written
    lead_in: int = 0  # frames before `start` entropy-decoded (not synthesized) on the way from their I-frame


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    err = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if err == 0 else 10 * math.log10(255.0**2 / err)


def _check_precision(precision: str) -> None:
    from vcodec.networks.pixel_path import PRECISIONS

    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")


def _load_bundle(model: str | os.PathLike, device):
    """The user's own choice (--model): a shipped model's name or a path to a weights file."""
    from vcodec import weights

    return weights.load(model, device)


def encode(
    input: str | os.PathLike,
    output: str | os.PathLike,
    quality: float = Q.DEFAULT_QUALITY,
    frames: int | None = None,
    start: int = 0,
    gop: int | None = None,
    fps: Fraction | float | None = None,
    device: str = "auto",
    model: str | os.PathLike | None = None,
    overwrite: bool = False,
    psnr: bool = False,
    on_start: Callable[[dict], None] | None = None,
    on_frame: Callable[[int, int, int, float | None], None] | None = None,
    inter_model: str | os.PathLike | None = None,
    preset: str = "medium",
    audio: bool = True,
    on_note: Callable[[str], None] | None = None,
    target: Target | None = None,
    fixed_gop: bool = False,
    precision: str = "auto",
) -> EncodeResult:
    """Encode a video, .y4m, folder of PNG frames or image into a .hfc stream written atomically at `output`.

    `gop`: frames from one I-frame to the next (1: all-intra; -1: only the first frame is an I-frame; None: the
    default, with P-frames when a P-frame model for this intra model is installed). `preset`: medium (g_a's latents),
    slow, slower or veryslow (a search per frame for cheaper symbols of the same quality, vcodec/refine.py; any
    decoder reads the result). The input's audio streams are kept as they are coded (`audio` False drops them);
    `on_note` hears about streams that cannot be.
    `target` (rate_control.Target: a bitrate, bpp or PSNR-RGB) replaces `quality` by one chosen per GOP. A frame
    the GOP makes a P-frame is coded as an I-frame when that is cheaper, unless `fixed_gop`. `precision`: the pixel
    path's (auto: mixed bf16 where the device runs it natively, else fp32; see vcodec/networks/pixel_path.py)."""
    from vcodec.codec import VideoDecoder, VideoEncoder, choose_inter_model, pick_device, stream_header
    from vcodec.weights import DEFAULT_MODEL

    from vcodec.media import is_stdio

    if is_stdio(output):
        raise InputError("encode writes a .hfc file, not stdout: its header and index are finished at the end")
    output = Path(output)
    if not Q.MIN_QUALITY <= quality <= Q.MAX_QUALITY:
        raise InputError(f"quality must be in {Q.MIN_QUALITY}..{Q.MAX_QUALITY}, got {quality:g}")
    if frames is not None and frames < 1:
        raise InputError("--frames must be at least 1")
    if start < 0:
        raise InputError("--start must be >= 0")
    if gop is not None and (gop < -1 or gop == 0 or gop > C.MAX_FRAMES):
        raise InputError("--gop must be at least 1, or -1 (only the first frame is an I-frame)")
    if fps is not None and not 0 < float(fps) <= 1000:
        raise InputError("--fps must be in (0, 1000]")
    if target is not None and gop == -1:
        raise InputError(f"--{target.kind} chooses a quality per GOP: give a GOP (--gop N), not -1")
    from vcodec.refine import PRESETS

    if preset not in PRESETS:
        raise InputError(f"--preset must be one of {', '.join(PRESETS)}, got '{preset}'")
    _check_precision(precision)
    check_output(output, overwrite, (Path(input),))
    rate = Fraction(fps).limit_denominator(1001) if fps is not None else None
    dev = pick_device(device)
    t0 = time.perf_counter()
    with open_source(input, rate, audio, on_note) as source:
        info = source.info
        check_picture_size(info.width, info.height, input)  # sources check their header; this is what they decoded
        bundle = _load_bundle(model or DEFAULT_MODEL, dev)
        stem, header_gop = choose_inter_model(bundle, inter_model, gop, dev)
        coder = VideoEncoder(bundle, dev, header_gop, stem, preset, adaptive=not fixed_gop, precision=precision)
        checker = VideoDecoder(bundle, dev, stem, precision) if psnr else None  # its own timings: the check is not encoding work
        header = stream_header(bundle, info.width, info.height, info.fps, info.colour, header_gop, stem)
        header.display = info.display
        fps_out = header.fps
        kept = source.audio  # its clock (0 when the first coded frame is shown) is the source's: timing.SourceClock
        expected = None
        if info.frame_count is not None:
            expected = max(0, info.frame_count - start)
            if frames is not None:
                expected = min(expected, frames)
        if on_start:
            on_start({"width": info.width, "height": info.height, "fps": fps_out, "frames": expected,
                      "source": info.description, "model": bundle.name, "device": str(dev)})
        total = 0
        n = 0
        p_frames = 0
        last_pts = None
        scores = []
        with C.StreamWriter(output, header, kept.streams if kept else None) as writer:

            def emit(rgb: np.ndarray, packet: C.Packet) -> int:
                nonlocal total, n, p_frames, last_pts
                packet.pts = last_pts = source.take_time()
                if source.clock is not None and source.clock.timed and not header.timed:
                    writer.carry_timestamps(source.clock.time_base)  # a frame out of place: all carry their times
                with coder.timings.stage("container"):
                    nbytes = writer.write(packet)
                p_frames += packet.frame_type == C.FRAME_P
                score = None
                if checker:
                    score = psnr_rgb(checker.decode(packet, info.width, info.height), rgb)
                    scores.append(score)
                total += nbytes
                n += 1
                if on_frame:
                    on_frame(n, nbytes, total, score)
                return nbytes

            frames_in = coder.timings.timed(source.frames(start, frames), "read")
            if target is None:
                for rgb in frames_in:
                    emit(rgb, coder.encode(rgb, quality))
                    for sound in source.take_audio():
                        writer.write_audio(sound)
            else:
                from vcodec.rate_control import QualityPlanner, encode_at_target

                def audio_so_far() -> None:
                    for sound in source.take_audio():
                        writer.write_audio(sound)

                planner = QualityPlanner(coder, target, info.width, info.height, fps_out, header.size,
                                         lambda count, last: _coming_seconds(source, count, last))
                chosen = encode_at_target(coder, planner, frames_in, header_gop, emit, audio_so_far)
            if n == 0:
                raise InputError(f"{input}: no frames to encode (start {start} is past the end?)")
            for sound in source.finish_audio():
                writer.write_audio(sound)
        size = output.stat().st_size
        # What the stream lasts, as probe() and `vcodec info` count it: to the last frame's time, an average frame more.
        duration = last_pts * header.time_base + 1 / fps_out if header.timed else Fraction(n) / fps_out
    mean_psnr = sum(scores) / len(scores) if scores else None
    return EncodeResult(n, size, info.width, info.height, fps_out, time.perf_counter() - t0, mean_psnr,
                        coder.timings.as_dict(), header.gop, header.inter_model, p_frames,
                        [a.codec for a in kept.streams] if kept else [], chosen if target is not None else [],
                        header.timed, header.display, duration)


def _coming_seconds(source, count: int, last: bool) -> Fraction | None:
    """Rate control's view of time: how long the next `count` frames to be coded are shown (to the time of the one
    after them; the last ones, an average frame after their last), or None while the source's frames are evenly
    spaced, when count / fps is exact and rate control works on frames as it always has."""
    clock = source.clock
    if clock is None or not clock.timed:
        return None
    return clock.coming_seconds(count, last)


def decode(
    input: str | os.PathLike,
    output: str | os.PathLike,
    device: str = "auto",
    model: str | os.PathLike | None = None,
    overwrite: bool = False,
    codec: str | None = None,
    crf: int | None = None,
    on_start: Callable[[dict], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
    start: int = 0,
    frames: int | None = None,
    start_seconds: Fraction | float | str | None = None,
    lossless: bool = False,
    audio: bool = True,
    on_note: Callable[[str], None] | None = None,
    precision: str = "auto",
) -> DecodeResult:
    """Decode a .hfc stream to a video, .y4m, PNG-frame folder or (`-`) y4m on stdout.

    `start`/`frames` (or `start_seconds`: the first frame shown at or after it) write only frames start ..
    start + frames - 1: decoding starts at the I-frame at or before `start`, found through the index. `lossless`
    writes .mp4/.mov exactly (RGB H.264, qp 0) instead of playable 4:2:0 H.264. The stream's audio goes into the
    video files that hold audio (`audio` False leaves it out); `on_note` hears what happens to it. `precision`: the
    pixel path's, as for encode() (pixels differ by a hair between precisions, symbols never).

    A damaged stream raises DamagedStream after the intact frames before the damage were written (as a complete
    output); when no frame is intact, nothing is written. Damaged audio costs no frame: the frames are all written,
    with the audio before the damage, and DamagedStream says so.
    """
    from vcodec.audio import AudioFeed
    from vcodec.media import is_stdio, takes_audio
    from vcodec.reader import DecodedStream

    note = on_note or (lambda text: None)

    to_stdout = is_stdio(output)
    if not to_stdout:
        output = named_path(output)  # '.' and '..' name a folder
        check_output(output, overwrite, (Path(input),))
    check_sink_path(output, codec, crf, lossless)
    if start < 0:
        raise InputError("--start must be >= 0")
    if frames is not None and frames < 1:
        raise InputError("--frames must be at least 1")
    if start_seconds is not None and start:
        raise InputError("give --start or --ss, not both")
    _check_precision(precision)
    where = "stdout" if to_stdout else output
    t0 = time.perf_counter()
    with DecodedStream(input, device, model, precision) as stream:
        h = stream.header
        if start_seconds is not None:
            start = stream.frame_at(start_seconds)
        partial = start > 0 or frames is not None
        if start and start >= len(stream):
            raise InputError(f"--start {start} is past the end: the stream has {len(stream)} frames")
        wanted = len(stream) - start if frames is None else min(frames, len(stream) - start)
        if on_start:
            on_start({"width": h.width, "height": h.height, "fps": h.fps, "frames": wanted, "model": h.model,
                      "start": start})
        with_audio = audio and h.has_audio and takes_audio(output)
        if audio and h.has_audio and not with_audio:
            kind = "y4m holds" if to_stdout or output.suffix.lower() == ".y4m" else "PNG frames hold"
            note(f"the stream's audio is not written: {kind} video only")
        sound = None
        sink = None
        n = zero = last = 0
        settle_end = False  # the span's end is known only from the frames written (below)
        damage = None
        timings = stream.decoder.timings
        try:
            try:
                for pts, rgb in stream.frames_with_pts(start, frames) if partial else stream.frames_with_pts():
                    if sink is None:
                        zero = pts  # the output's clock starts when its first frame is shown
                        if with_audio:  # the span's audio, on that clock
                            end = None
                            if partial:  # what starts at or after the time of the first frame left out is left out
                                try:
                                    end = stream.time_of(start + wanted)
                                except DamagedStream:  # its time is in a damaged packet: the frames written decide
                                    settle_end = True
                            sound = AudioFeed(stream.reader, zero * stream.time_base if start else Fraction(0), end)
                        sink = open_sink(output, h.width, h.height, h.fps, h.colour, codec, crf, lossless,
                                         sound.streams if sound else None, note, h.time_base, h.display)
                    if sound:  # the audio up to this frame's end first (a frame of a timed stream: an average one)
                        sound.write_until(sink, (pts - zero) * stream.time_base + 1 / h.fps)
                    with timings.stage("write"):
                        sink.write(rgb, pts - zero)
                    last = pts
                    n += 1
                    if on_frame:
                        on_frame(n)
                if partial and stream.index_damage is not None:  # the frames were found by reading from frame 0
                    damage = DamagedStream(f"{stream.index_damage} (read from the first frame instead)", start + n)
            except DamagedStream as e:
                damage = e  # the intact frames before it are still published
            if sink is not None:
                if sound:
                    if settle_end:  # the span ends where its last frame written does (an average frame after it)
                        sound.end = last * stream.time_base + 1 / h.fps
                    sound.write_until(sink, None)  # damaged video costs no audio
                with timings.stage("write"):  # the output's encoder finishes its last frames
                    sink.close()
        except BaseException:
            if sink is not None:
                sink.abort()  # also when publishing failed: no temp file or folder is left behind
            raise
        if damage is not None:
            if sink is not None:
                raise DamagedStream(f"{damage}; wrote the {n} intact frame{'s' if n != 1 else ''} before it to {where}",
                                    damage.frame) from None
            nothing = "none of the frames asked for is intact" if partial else "no intact frame"
            raise DamagedStream(f"{damage}; {nothing}, nothing written", damage.frame) from None
        if sink is None:
            raise DamagedStream("stream holds no frames; nothing written", 0)
        audio_damage = sound and (sound.damage or (sink.audio and sink.audio.damage) or sink.audio_damage)
        if audio_damage:
            raise DamagedStream(f"{audio_damage}; wrote all {n} frames, and the audio before the damage, to {where}",
                                start + n)
        lead_in = stream.lead_in
    return DecodeResult(n, h.width, h.height, h.fps, time.perf_counter() - t0, timings.as_dict(), start, lead_in)


def probe(input: str | os.PathLike) -> dict:
    """Describe a stream like ffprobe: header, per-frame rows, section sizes, and the first damage if any."""
    path = Path(input)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an .hfc stream")
    with C.StreamReader(path) as reader:
        h = reader.header
        pixels = h.width * h.height
        rows = []
        damage = None
        tick = h.time_base if h.timed else 1 / h.fps  # frame i is shown at its pts x tick (its index without pts)
        try:
            for p in reader.packets():
                pts = p.index if p.pts is None else p.pts
                rows.append({
                    "index": p.index, "type": C.FRAME_TYPES[p.frame_type], "quality": p.quality,
                    "latent_shape": list(p.latent_shape), "hyper_shape": list(p.hyper_shape),
                    "substream_bytes": [len(s) for s in p.substreams], "bytes": p.nbytes, "bpp": p.nbytes * 8 / pixels,
                    "pts": pts, "time_s": float(pts * tick),
                })
        except DamagedStream as e:
            damage = {"frame": e.frame, "message": str(e)}
        seconds = _duration(reader, rows, damage is not None)
        d = h.display
        audio, audio_bytes, audio_damage = _audio_rows(reader)
        if damage is None and audio_damage is not None:
            damage = {"frame": None, "message": str(audio_damage)}
        return {
            "file": str(path),
            "file_bytes": reader.size,
            "format_version": h.version,
            "model": h.model,
            "weights_sha256": h.weights_hash.hex(),
            "inter_model": h.inter_model,
            "inter_weights_sha256": h.inter_hash.hex() if h.inter_hash else None,
            "entropy_form": C.ENTROPY_FORMS[h.entropy_form],
            "width": h.width,
            "height": h.height,
            "padded_width": h.padded_width,
            "padded_height": h.padded_height,
            "fps": f"{h.fps.numerator}/{h.fps.denominator}",
            "fps_float": float(h.fps),
            "variable_frame_rate": h.timed,  # then fps is the average, and each frame has its own pts
            # of the frames' pts; None without them (frame i is shown at i / fps, its "pts" being i)
            "time_base": f"{tick.numerator}/{tick.denominator}" if h.timed else None,
            "display": None if d is None else {"rotation": d.rotation, "mirror": d.mirror,
                                               "sample_aspect_ratio": f"{d.aspect.numerator}:{d.aspect.denominator}"},
            "colour": {"matrix": h.colour.matrix, "full_range": h.colour.full_range, "primaries": h.colour.primaries,
                       "transfer": h.colour.transfer, "bit_depth": h.colour.bit_depth},
            "gop": h.gop,
            "frame_count": h.frame_count,
            "duration_s": float(seconds),
            "header_bytes": reader.header_size,
            "index_bytes": reader.index_bytes,  # as parsed; None when the stream is damaged
            "bpp": reader.size * 8 / (pixels * max(1, h.frame_count)),
            "bitrate_kbps": reader.size * 8 / 1000 / max(1e-9, float(seconds)),
            "frames": rows,
            "audio": audio,
            "audio_bytes": audio_bytes,
            "damage": damage,
        }


def _duration(reader: C.StreamReader, rows: list[dict], damaged: bool) -> Fraction:
    """How long the stream lasts, in seconds: frame count / fps; for a timed stream, to its last frame's time and one
    average frame more (what decode gives that frame). The last frame's time is its packet's: read with the frames
    when they are intact, else from the seek table (the index, checked against every packet header), and when that
    is damaged too, unknown: then the frame count / fps stands for it."""
    h = reader.header
    if not h.timed or not h.frame_count:
        return Fraction(h.frame_count) / h.fps
    if not damaged:
        return rows[-1]["pts"] * h.time_base + 1 / h.fps
    parsed = reader.index_bytes
    try:
        last = reader.seek_table().pts[-1]
    except DamagedStream:
        return Fraction(h.frame_count) / h.fps
    finally:
        reader.index_bytes = parsed  # what probe reports stays the index as the packets read it: none when damaged
    return last * h.time_base + 1 / h.fps


def _audio_rows(reader: C.StreamReader) -> tuple[list[dict], int, C.DamagedAudio | None]:
    """Per audio stream: codec, rate, channels, packets, bytes, first timestamp and duration (seconds); the audio
    section's size (0 without one); and its first damage, if any (the rows then count what came before it)."""
    try:
        streams = reader.audio_streams()
    except C.DamagedAudio as e:
        return [], 0, e
    rows = [{"index": k, "codec": s.codec, "sample_rate": s.sample_rate, "channels": s.channels,
             "time_base": f"{s.time_base.numerator}/{s.time_base.denominator}", "packets": 0, "bytes": 0,
             "start_s": None, "duration_s": 0.0} for k, s in enumerate(streams)]
    size, damage = (reader.audio_section_bytes if streams else 0), None
    starts: list[int | None] = [None] * len(streams)
    ends: list[int | None] = [None] * len(streams)
    try:
        for p in reader.audio_packets():
            k = p.stream
            rows[k]["packets"] += 1
            rows[k]["bytes"] += len(p.data)
            size += C.AUDIO_PACKET_HEADER + len(p.data)
            starts[k] = p.pts if starts[k] is None else min(starts[k], p.pts)
            ends[k] = p.pts + p.duration if ends[k] is None else max(ends[k], p.pts + p.duration)
    except C.DamagedAudio as e:
        damage = e
    for row, first, last, s in zip(rows, starts, ends, streams):
        if first is not None:
            row["start_s"] = float(first * s.time_base)
            row["duration_s"] = float((last - first) * s.time_base)
    return rows, size, damage
