"""Reading and writing pictures: anything PyAV opens, .y4m (also on stdin and stdout: `-`), folders of PNG frames,
single images.

Frames are uint8 RGB arrays (H, W, 3), streamed one at a time: a video is never held in memory whole. YUV sources
are converted with their own matrix and range (BT.601 / BT.709 from their tags; untagged ones the way players
guess: 709 from 720 lines up), which the stream records so that `decode` writes YUV back with the same matrix.
Writers fill a temp file (or folder) beside the output and rename it into place on `close()`; the y4m writer on
stdout writes as it goes (a pipe cannot be taken back).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import struct
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from vcodec.container import MAX_FRAMES, MAX_SIDE, Colour, DamagedAudio, Display
from vcodec.errors import InputError, OutputError
from vcodec.paths import named_path, natural_key

STDIO = "-"  # as input: y4m on stdin; as output: y4m on stdout
PIPE_NAME = {"r": "stdin", "w": "stdout"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
FRAME_FOLDER_SUFFIXES = {".png"}
DEFAULT_FPS = Fraction(25)
# Largest picture coded in one piece: 8K UHD (bigger ones would need tiling, which v1 streams do not have), and no side
# longer than a stream can hold. Sources check it from the file's header before decoding any pixel; decode refuses a
# stream that claims more.
MAX_PICTURE = (7680, 4320)
MAX_PIXELS = MAX_PICTURE[0] * MAX_PICTURE[1]
SIZE_LIMIT = f"at most {MAX_PICTURE[0]}x{MAX_PICTURE[1]} = {MAX_PIXELS:,} pixels, and {MAX_SIDE} per side"
# The names FolderSink gives its frames: the only files `-y` may delete when it replaces a folder.
FRAME_NAME = re.compile(r"f[0-9]+\.png\Z")
# H.273 matrix code -> swscale colourspace
_MATRIX_TO_SWS = {1: Colorspace.ITU709, 4: Colorspace.FCC, 5: Colorspace.ITU601, 6: Colorspace.ITU601,
                  7: Colorspace.SMPTE240M, 9: Colorspace.BT2020, 10: Colorspace.BT2020}
_RGB_FORMATS = {"rgb24", "bgr24", "rgba", "bgra", "argb", "abgr", "rgb0", "bgr0", "0rgb", "0bgr", "gbrp", "gbrap",
                "rgb48le", "rgb48be", "rgba64le", "rgba64be", "gbrp10le", "gbrp12le", "gbrp16le", "gray", "gray16le",
                "gray16be", "gray10le", "gray12le", "ya8", "ya16be", "pal8", "monob", "monow"}


def default_matrix(height: int) -> int:
    return 1 if height >= 720 else 6


@dataclass
class SourceInfo:
    width: int
    height: int
    fps: Fraction
    frame_count: int | None  # None when the container does not say
    colour: Colour = field(default_factory=Colour)
    description: str = ""
    display: Display | None = None  # rotation, mirroring, sample aspect ratio: None when they are the defaults


class Source:
    """An opened input. Iterate `frames(start, count)` once; close() (or use as a context manager) afterwards.

    `audio` keeps the input's audio streams (vcodec/audio.py; None for pictures and y4m): take_audio() hands over the
    packets demuxed so far, finish_audio() the rest of those the frames asked for need. `clock` (a
    timing.SourceClock, for sources with timestamps) says when each coded frame is shown: take_time() hands over the
    next frame's pts, one per frame coded, in `clock.time_base`."""

    info: SourceInfo
    audio = None  # an audio.AudioKeeper when the input has audio streams that are kept
    clock = None

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def take_time(self) -> int | None:
        return self.clock.take() if self.clock is not None else None

    def take_audio(self) -> list:
        return []

    def finish_audio(self) -> list:
        return []

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def too_large(width: int, height: int) -> bool:
    return width * height > MAX_PIXELS or width > MAX_SIDE or height > MAX_SIDE


def check_picture_size(width: int, height: int, what: str | os.PathLike) -> None:
    if too_large(width, height):
        raise InputError(f"{what}: {width}x{height} is larger than this version encodes ({SIZE_LIMIT}); downscale it first")


def _png_size(path: Path) -> tuple[int, int] | None:
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", head[16:24])
    return w, h


def _picture_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the file's header, without decoding a pixel; None when neither reader can tell."""
    try:
        size = _png_size(path)
    except OSError:
        return None
    if size is not None:
        return size
    try:
        from PIL import Image  # optional: lazy, reads only the header
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                return im.size
        except Image.DecompressionBombError:
            bomb = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            if bomb < MAX_PIXELS:
                return None
            raise InputError(f"{path}: more than {bomb:,} pixels is larger than this version encodes ({SIZE_LIMIT}); "
                             "downscale it first") from None
        except Exception:  # not a format Pillow knows: PyAV may still read it
            return None


def _decode_picture(path: Path) -> av.VideoFrame:
    try:
        with av.open(str(path)) as c:
            for frame in c.decode(video=0):
                return frame
    except (av.error.FFmpegError, IndexError, ValueError) as e:
        raise InputError(f"cannot read picture {path}: {e}") from None
    raise InputError(f"cannot read picture {path}: no image in it")


def _colour_of(frame: av.VideoFrame) -> Colour:
    fmt = frame.format.name
    if fmt in _RGB_FORMATS:
        return Colour(matrix=0, full_range=True)
    matrix = int(frame.colorspace) if int(frame.colorspace) in _MATRIX_TO_SWS else default_matrix(frame.height)
    full = int(frame.color_range) == 2 or fmt.startswith("yuvj")
    prim = int(frame.color_primaries) if 0 < int(frame.color_primaries) < 256 else 2
    trc = int(frame.color_trc) if 0 < int(frame.color_trc) < 256 else 2
    return Colour(matrix=matrix, full_range=full, primaries=prim, transfer=trc)


def to_rgb(frame: av.VideoFrame, colour: Colour) -> np.ndarray:
    if frame.format.name == "rgb24":
        return frame.to_ndarray()
    if colour.matrix == 0 or frame.format.name in _RGB_FORMATS:
        return frame.to_ndarray(format="rgb24")
    return frame.reformat(
        format="rgb24",
        src_colorspace=_MATRIX_TO_SWS.get(colour.matrix, Colorspace.ITU601),
        src_color_range=ColorRange.JPEG if colour.full_range else ColorRange.MPEG,
        dst_color_range=ColorRange.JPEG,
    ).to_ndarray()


def is_stdio(path: str | os.PathLike) -> bool:
    return str(path) == STDIO


class VideoSource(Source):
    """A video file, or (`pipe`) a y4m stream read as it comes: from stdin, with no seeking and flat memory."""

    def __init__(self, path: Path | str, fps: Fraction | None, pipe: BinaryIO | None = None, audio: bool = False,
                 notes: Callable[[str], None] | None = None):
        try:
            if pipe is not None:
                self.container = av.open(pipe, format="yuv4mpegpipe")
            else:
                self.container = av.open(str(path))
        except FileNotFoundError:
            raise InputError(f"input not found: {path}") from None
        except (av.error.FFmpegError, ValueError, OSError) as e:
            if pipe is not None:
                raise InputError(f"{path}: not a y4m stream ({e}); pipe YUV4MPEG2 in, e.g. "
                                 "ffmpeg -i in.mkv -f yuv4mpegpipe - | vcodec encode - out.hfc") from None
            raise InputError(f"cannot open {path}: not a video or image PyAV can read ({e})") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{path} has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.path = path
        self.notes = notes or (lambda note: None)
        ctx = self.stream.codec_context
        rate = fps or self.stream.average_rate or self.stream.guessed_rate or DEFAULT_FPS
        # The frames' own times, unless --fps retimed them to a constant rate.
        self.time_base = Fraction(self.stream.time_base) if fps is None and self.stream.time_base else None
        frames = self.stream.frames or None
        if not ctx.width or not ctx.height:
            self.container.close()
            raise InputError(f"{path}: video stream has no frame size")
        try:
            check_picture_size(ctx.width, ctx.height, path)
        except InputError:
            self.container.close()
            raise
        if audio and self.container.streams.audio:
            from vcodec.audio import AudioKeeper

            self.audio = AudioKeeper(list(self.container.streams.audio), self.notes)
            if not self.audio.streams:
                self.audio = None
        self._demuxed_audio: list[av.Packet] = []  # converted by take_audio once the clock says where they belong
        self._early_audio: list = []  # converted while frames before the span were skipped
        self._exhausted = False
        self._first: av.VideoFrame | None = None
        self._iter = self._decoded()
        try:
            self._first = next(self._iter)
        except StopIteration:
            self.container.close()
            raise InputError(f"{path} has no video frames") from None
        # The clock the audio is kept on starts when the first frame is shown.
        if self._first.pts is not None and self._first.time_base is not None:
            self.first_time = Fraction(self._first.pts) * Fraction(self._first.time_base)
        else:
            self.first_time = Fraction(0)
        colour = _colour_of(self._first)
        from vcodec.display import display_of

        self.info = SourceInfo(
            self._first.width, self._first.height, Fraction(rate), frames, colour,
            f"{ctx.name} {self._first.format.name} {self._first.width}x{self._first.height}",
            display_of(self.stream, self._first, self.notes),
        )

    def _decoded(self) -> Iterator[av.VideoFrame]:
        audio = self.audio.sources if self.audio else []
        try:
            for packet in self.container.demux(self.stream, *audio):
                if packet.stream.type == "video":
                    yield from packet.decode()
                elif packet.size:
                    self._demuxed_audio.append(packet)
        except av.error.FFmpegError as e:
            raise InputError(f"{self.path}: cannot decode video ({e})") from None
        self._exhausted = True

    def take_audio(self) -> list:
        """The audio packets demuxed so far, on the kept streams' clock (those outside the span dropped), as far as
        the frames seen so far place them: the rest wait, in the order demuxed, for the frame that decides."""
        clock, waiting = self.clock, self._demuxed_audio
        taken, self._early_audio = self._early_audio, []
        if self.audio is None or clock is None:
            return taken
        if clock.origin is None:  # before the span: what ends before the frame skipped last cannot reach into it
            if clock.skipped_to is not None:
                waiting[:] = [p for p in waiting if not self._ends_before(p, clock.skipped_to)]
            return taken
        self.audio.origin, self.audio.trim_start, self.audio.end = clock.origin, clock.start > 0, clock.end
        done = 0
        for packet in waiting:
            if not clock.end_known:
                starts = packet.pts if packet.pts is not None else packet.dts
                if starts is not None and not clock.before_end(starts * Fraction(packet.time_base) - clock.origin):
                    break  # it may be after the span's end: a later frame tells
            done += 1
            converted = self.audio.convert(packet)
            if converted is not None:
                taken.append(converted)
        del waiting[:done]
        return taken

    @staticmethod
    def _ends_before(packet: av.Packet, seconds: Fraction) -> bool:
        if packet.dts is None:
            return True  # convert() keeps no such packet either
        starts = packet.pts if packet.pts is not None else packet.dts
        return (starts + max(0, packet.duration or 0)) * Fraction(packet.time_base) < seconds

    def finish_audio(self) -> list:
        """After the last frame: the audio still to come for the span coded. When the frames stopped before the end
        of the file, audio stored after the last frame's video packets is read too (up to the span's end)."""
        if self.clock is not None:
            self.clock.finish()
        taken = self.take_audio()
        if self.audio is None or self._exhausted or self.audio.end is None:
            return taken
        waiting = {s.index for s in self.audio.sources}
        try:
            for packet in self.container.demux(*self.audio.sources):
                if not packet.size or packet.dts is None:
                    continue
                starts = (packet.pts if packet.pts is not None else packet.dts) * Fraction(packet.time_base)
                if starts - self.audio.origin >= self.audio.end:
                    waiting.discard(packet.stream.index)  # this stream is past the span
                    if not waiting:
                        break
                    continue
                converted = self.audio.convert(packet)
                if converted is not None:
                    taken.append(converted)
        except av.error.FFmpegError as e:
            raise InputError(f"{self.path}: cannot read audio ({e})") from None
        return taken

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        from vcodec.timing import SourceClock

        def all_frames():
            if self._first is not None:
                first, self._first = self._first, None
                yield first
            yield from self._iter

        self.clock = SourceClock(self.info.fps, self.time_base, self.first_time, start, count, self.notes)
        n = 0
        for i, frame in enumerate(all_frames()):
            self.clock.see(frame.pts)
            if i < start:
                self._early_audio = self.take_audio()  # what is before the span is dropped as it comes
                continue
            if count is not None and n >= count:
                break
            if (frame.width, frame.height) != (self.info.width, self.info.height):
                raise InputError(
                    f"{self.path}: frame {i} is {frame.width}x{frame.height}, the first is "
                    f"{self.info.width}x{self.info.height}; size changes mid-stream are not supported"
                )
            yield to_rgb(frame, self.info.colour)
            n += 1

    def close(self) -> None:
        self.container.close()


class FolderSource(Source):
    """Frames f001.png, f002.png, ... (any prefix; numbered without gaps) of one size."""

    def __init__(self, path: Path, fps: Fraction | None):
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in FRAME_FOLDER_SUFFIXES), key=lambda p: natural_key(p.name))
        if not files:
            raise InputError(f"{path} holds no PNG frames")
        numbers = [re.findall(r"\d+", p.stem) for p in files]
        if all(numbers):
            seq = [int(n[-1]) for n in numbers]
            for a, b, pa, pb in zip(seq, seq[1:], files, files[1:]):
                if b != a + 1:
                    raise InputError(f"{path}: frame numbers jump from {pa.name} to {pb.name} (missing frames?)")
        sizes = {}
        for p in files:
            size = _png_size(p)
            if size is None:
                raise InputError(f"{p} is not a PNG file")
            sizes.setdefault(size, p)
            if len(sizes) > 1:
                (w0, h0), (w1, h1) = list(sizes)[:2]
                raise InputError(f"{path}: {p.name} is {w1}x{h1} but {files[0].name} is {w0}x{h0}; frames must share one size")
        self.files = files
        check_picture_size(*next(iter(sizes)), path)
        first = _decode_picture(files[0])
        colour = _colour_of(first)
        self.info = SourceInfo(first.width, first.height, fps or DEFAULT_FPS, len(files), colour, f"{len(files)} PNG frames")

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        end = len(self.files) if count is None else min(len(self.files), start + count)
        for p in self.files[start:end]:
            yield to_rgb(_decode_picture(p), self.info.colour)


class ImageSource(Source):
    def __init__(self, path: Path, fps: Fraction | None):
        if not path.is_file():
            raise InputError(f"input not found: {path}")
        size = _picture_size(path)
        if size is not None:
            check_picture_size(*size, path)
        self.frame = _decode_picture(path)
        colour = _colour_of(self.frame)
        self.info = SourceInfo(self.frame.width, self.frame.height, fps or DEFAULT_FPS, 1, colour, f"image {self.frame.format.name}")

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        if start == 0 and (count is None or count > 0):
            yield to_rgb(self.frame, self.info.colour)


def open_source(path: str | os.PathLike, fps: Fraction | None = None, audio: bool = False,
                notes: Callable[[str], None] | None = None) -> Source:
    """An opened input; with `audio` its audio streams are kept too (the caller then takes them as frames come), and
    `notes` hears of those that cannot be."""
    if is_stdio(path):
        if sys.stdin is None or sys.stdin.isatty():
            raise InputError("input '-' reads y4m from stdin, but stdin is a terminal: pipe a YUV4MPEG2 stream in")
        return VideoSource(PIPE_NAME["r"], fps, sys.stdin.buffer)
    path = Path(path)
    if path.is_dir():
        return FolderSource(path, fps)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path, fps)
    return VideoSource(path, fps, audio=audio, notes=notes)


# ------------------------------------------------------------------------------------------------------ writing
# Codec per container when none is asked for: exact (lossless RGB) everywhere but in the MP4 family, where it is
# what browsers and players play (PLAYABLE); --lossless gives those the exact one too.
_LOSSLESS_CODECS = {".mp4": "libx264rgb", ".mov": "libx264rgb", ".m4v": "libx264rgb", ".mkv": "ffv1", ".avi": "ffv1",
                    ".webm": "libvpx-vp9", ".y4m": "rawvideo"}
_PLAYABLE_SUFFIXES = {".mp4", ".mov", ".m4v"}
AUDIO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}  # the outputs that get the stream's audio
# The outputs that hold per-frame times and a display matrix. AVI holds a constant rate (FFmpeg fills a gap in the
# times with empty frames, one per tick of the time base), y4m and PNG frames hold neither.
TIMED_SUFFIXES = DISPLAY_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm"}
# The outputs that hold a constant rate beside audio at its real times: timed frames are repeated or dropped there
# to stay at their times (VideoSink), up to as many output frames as a stream may count.
CFR_SUFFIXES = {".avi"}
MAX_CFR_FRAMES = MAX_FRAMES
# The encoders that carry a sample aspect ratio in their bitstream (H.264 and HEVC VUI). PyAV sets none on the
# container (AVStream), so FFV1, VP9 and raw video tracks cannot be given one here.
ASPECT_CODECS = {"libx264", "libx264rgb", "libx265"}
_RGB_CODECS = {"libx264rgb": "rgb24", "ffv1": "bgr0"}
VIDEO_SUFFIXES = set(_LOSSLESS_CODECS)
# The playable default: H.264 High 4:2:0 at CRF 14, preset veryfast. What is lost against the exact decode is mostly
# 4:2:0 chroma, which the sources had too. The preset is the output's CPU cost beside vcodec's own decoding, and the
# file is not the compressed one (the .hfc is): measured 2026-12-02 on 16 decoded 720p frames (q 4, 2 cores),
# against the exact decode: slow CRF 16 95 CPU-ms per frame, fast CRF 16 59 ms, 38.82 dB, 1,045 kB; faster CRF 15
# 39 ms, 39.02 dB, 1,195 kB; veryfast CRF 14 28 ms, 39.05 dB, 1,277 kB. So veryfast at a lower CRF: half the CPU of
# fast, at a slightly higher PSNR, for a 22 % larger file.
PLAYABLE_CODEC, PLAYABLE_CRF, PLAYABLE_PRESET, PLAYABLE_PIX_FMT = "libx264", 14, "veryfast", "yuv420p"


def is_frame_folder(path: Path) -> bool:
    return path.is_dir() or str(path).endswith(os.sep) or path.suffix == ""


class Sink:
    """Where decoded frames go. write() frames in order, then close() to publish, or abort() to leave nothing.
    write_audio() muxes audio packets where the output holds audio (a video file); elsewhere it drops them.
    `time_base` is set when the output holds the frames' own times: write() then takes each frame's pts in it."""

    frames_written = 0
    audio = None
    audio_damage = None  # an audio stream that could not be finished (the video was published all the same)
    time_base: Fraction | None = None

    def write_audio(self, packet) -> None:
        pass

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def check_frame_folder_target(path: Path) -> None:
    """Refuse an existing `path` that -y must not replace with PNG frames: anything but a folder holding only the
    frames vcodec writes (f00001.png, ...; no subfolders). A home folder given by mistake stays untouched."""
    if not os.path.lexists(path):
        return
    if not path.is_dir():
        raise InputError(f"will not replace {path}: it is a file, not a folder of PNG frames")
    try:
        entries = list(os.scandir(path))
    except OSError as e:
        raise OutputError(f"cannot read folder {path}: {e.strerror}") from None
    for entry in sorted(entries, key=lambda e: e.name):
        if not (FRAME_NAME.match(entry.name) and entry.is_file(follow_symlinks=False)):
            raise InputError(f"will not replace {path}: it holds {entry.name!r}, and -y replaces only a folder of PNG "
                             "frames as vcodec writes them (f00001.png, ...)")


def _remove_frames(folder: Path) -> None:
    """Delete a replaced frame folder: only the frame files, then the folder if that left it empty."""
    if folder.is_symlink():
        folder.unlink()
        return
    for entry in os.scandir(folder):
        if FRAME_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
    try:
        os.rmdir(folder)
    except OSError:
        pass  # something else appeared in it meanwhile: left beside the output rather than deleted


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished temp file or folder onto `final`, replacing what -y allowed us to replace."""
    try:
        if not tmp.is_dir():
            if final.is_dir():
                raise OutputError(f"cannot write {final}: it is a folder")
            os.replace(tmp, final)
            return
        if not os.path.lexists(final):
            os.replace(tmp, final)
            return
        if not final.is_dir():
            raise OutputError(f"cannot write {final}: it is a file, not a folder")
        check_frame_folder_target(final)  # checked before decoding too; this is in case it changed meanwhile
        old = tmp.with_name(tmp.name + ".old")
        os.replace(final, old)
        try:
            os.replace(tmp, final)
        except OSError:
            os.replace(old, final)
            raise
        try:
            _remove_frames(old)
        except OSError:
            pass  # the new frames are in place; the old ones stay in the hidden folder beside them
    except OSError as e:
        raise OutputError(f"cannot write {final}: {e.strerror or e}") from None


class FolderSink(Sink):
    """PNG frames f00001.png, ... in a temp folder that becomes `path` on close."""

    def __init__(self, path: Path, digits: int = 5):
        self.path = path = named_path(path)
        if not path.name:
            raise InputError(f"cannot write PNG frames to {path}")
        self.digits = digits
        parent = path.parent
        try:
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
        except OSError as e:
            raise OutputError(f"cannot write to {parent}: {e.strerror}") from None
        self.codec = av.CodecContext.create("png", "w")
        self.frames_written = 0

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        ctx = self.codec
        if not ctx.is_open:
            ctx.width, ctx.height, ctx.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb24"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        data = b"".join(bytes(p) for p in ctx.encode(frame))
        self.frames_written += 1
        try:
            (self.tmp / f"f{self.frames_written:0{self.digits}d}.png").write_bytes(data)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None

    def close(self) -> None:
        os.chmod(self.tmp, 0o755)
        _publish(self.tmp, self.path)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class PipeClosed(BrokenPipeError):
    """The program reading our stdout went away (`vcodec decode x.hfc - | head`): not an error of ours, and the
    command line ends quietly (a BrokenPipeError, so that it needs no import of this module to catch it)."""


def _even(side: int) -> int:
    return side + side % 2


class VideoSink(Sink):
    """A video file (or, with `pipe`, y4m on stdout). The playable default pads an odd side by repeating its last
    row or column: 4:2:0 H.264 has no odd sizes, and its cropping works in steps of two pixels.

    Frames with their own times (`time_base`) keep them where the container holds them (TIMED_SUFFIXES). An AVI holds
    a constant rate, and its audio is muxed at its real times: there, as ffmpeg's `-fps_mode cfr` does, frames are
    repeated or dropped so that output frame k (shown at k / fps) is the frame on screen at the middle of its
    interval, which keeps every frame within half an output frame of its time and so of the audio (CFR_SUFFIXES).
    y4m holds no audio, and there (and in PNG frames) each frame is written once, one after another."""

    tmp: Path | None = None
    cfr: "_ConstantRate | None" = None  # timed frames on the constant-rate clock of an AVI
    _held: av.VideoFrame | None = None  # there: the frame written once the next one says for how long
    _last_tick: tuple[int, int, int] | None = None  # timed outputs: (frame, output tick, pts) of the frame before
    _tick_said = False

    def __init__(self, path: Path, width: int, height: int, fps: Fraction, colour: Colour,
                 codec: str | None = None, crf: int | None = None, lossless: bool = False,
                 pipe: BinaryIO | None = None, audio: list | None = None, notes=None,
                 time_base: Fraction | None = None, display: Display | None = None):
        try:  # whatever goes wrong once the temp file exists (a muxer's refusal, an overflow): nothing is left behind
            self._open(path, width, height, fps, colour, codec, crf, lossless, pipe, audio, notes, time_base, display)
        except BaseException:
            self.abort()
            raise

    def _open(self, path: Path, width: int, height: int, fps: Fraction, colour: Colour, codec: str | None,
              crf: int | None, lossless: bool, pipe: BinaryIO | None, audio: list | None, notes,
              time_base: Fraction | None, display: Display | None) -> None:
        suffix = ".y4m" if pipe is not None else path.suffix.lower()
        notes = notes or (lambda note: None)
        self.path = path
        self.pipe = pipe
        self.colour = colour
        self.tmp: Path | None = None
        playable = codec is None and not lossless and suffix in _PLAYABLE_SUFFIXES
        codec = codec or (PLAYABLE_CODEC if playable else _LOSSLESS_CODECS[suffix])
        if playable:
            width, height = _even(width), _even(height)
        if pipe is None:
            parent = path.parent if str(path.parent) else Path(".")
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=parent)
                os.close(fd)
            except OSError as e:
                raise OutputError(f"cannot write to {parent}: {e.strerror}") from None
            self.tmp = Path(tmp)
        # moov before mdat: a browser starts playing before the whole file has arrived
        options = {"movflags": "+faststart"} if suffix in _PLAYABLE_SUFFIXES else {}
        try:
            target = pipe if pipe is not None else str(self.tmp)
            self.container = av.open(target, "w", format="yuv4mpegpipe" if suffix == ".y4m" else None, options=options)
            self.stream = self.container.add_stream(codec, rate=fps)
        except (av.error.FFmpegError, ValueError) as e:
            self.abort()
            raise InputError(f"cannot write {suffix} with codec '{codec}': {e}") from None
        self.stream.width, self.stream.height = width, height
        self.stream.time_base = Fraction(1, 1) / fps
        self.notes, self.fps = notes, Fraction(fps)
        if time_base is not None:
            if suffix in TIMED_SUFFIXES:
                self.time_base = Fraction(time_base)
                self.stream.time_base = self.stream.codec_context.time_base = self.time_base
                # Each frame lasts until the next one; the last one, for the average frame's time.
                self.frame_ticks = max(1, round(1 / (fps * self.time_base)))
            elif suffix in CFR_SUFFIXES and pipe is None:
                self.cfr = _ConstantRate(Fraction(time_base), self.fps)
                notes(f"the stream's frame times (a variable frame rate) are not written: {_kind(suffix, pipe)} holds "
                      f"a constant rate ({float(fps):.3f} fps), so frames are repeated or dropped to keep each at its "
                      "time, and in sync with the audio (as ffmpeg -fps_mode cfr)")
            else:
                notes(f"the stream's frame times (a variable frame rate) are not written: {_kind(suffix, pipe)} holds a "
                      f"constant rate, at which its frames follow one another ({float(fps):.3f} fps)")
        if display is not None:
            self._tag(display, suffix, codec, pipe, notes)
        self.audio = None  # an audio.AudioWriter, when the stream's audio goes into this file
        self.audio_damage = None
        if audio and pipe is None and suffix in AUDIO_SUFFIXES:
            from vcodec.audio import AudioWriter

            self.audio = AudioWriter(self.container, suffix, audio, notes)
        self.pix_fmt = PLAYABLE_PIX_FMT if playable else self._pixel_format(codec, width, height, suffix)
        self.stream.pix_fmt = self.pix_fmt
        options = {}
        if playable:
            options = {"crf": str(PLAYABLE_CRF if crf is None else crf), "preset": PLAYABLE_PRESET}
        elif codec == "libx264rgb" and crf is None:
            options["qp"] = "0"  # lossless
        elif codec == "libvpx-vp9" and crf is None:
            options["lossless"] = "1"
        elif crf is not None:
            options["crf"] = str(crf)
        self.stream.options = options
        # YUV keeps the source's range (limited for RGB sources: what players assume) and is tagged with its colour
        self.full_range = colour.full_range and colour.matrix != 0
        if self.pix_fmt not in ("rgb24", "bgr0", "gbrp"):
            ctx = self.stream.codec_context
            ctx.colorspace = colour.matrix if colour.matrix else 1
            ctx.color_range = 2 if self.full_range else 1
            ctx.color_primaries = colour.primaries
            ctx.color_trc = colour.transfer
        self.frames_written = 0

    def _tag(self, display: Display, suffix: str, codec: str, pipe, notes) -> None:
        """Pass the stream's display metadata on to the output, and say what the output cannot hold."""
        from vcodec.display import describe

        left_out, why = [], []
        if display.rotation or display.mirror:
            if suffix in DISPLAY_SUFFIXES:
                self.stream.set_display_rotation(display.rotation, hflip=display.mirror)
            else:
                left_out.append(describe(Display(display.rotation, display.mirror)))
                why.append(f"{_kind(suffix, pipe)} holds no display matrix")
        if display.aspect != 1:
            if codec in ASPECT_CODECS and pipe is None:
                self.stream.codec_context.sample_aspect_ratio = display.aspect
            else:
                left_out.append(describe(Display(aspect=display.aspect)))
                why.append("vcodec writes no aspect ratio into y4m" if _kind(suffix, pipe) == "y4m" else
                           f"{codec} tracks do not carry one here (H.264 and HEVC tracks do: --codec libx264)")
        if left_out:
            notes(f"the stream's {' and '.join(left_out)} {'is' if len(left_out) == 1 else 'are'} not written: "
                  f"{'; '.join(why)}")

    def _pixel_format(self, codec: str, width: int, height: int, suffix: str) -> str:
        if codec in _RGB_CODECS:
            return _RGB_CODECS[codec]
        if codec == "libvpx-vp9":
            return "gbrp"
        formats = [f.name for f in (self.stream.codec_context.codec.video_formats or [])]
        even = width % 2 == 0 and height % 2 == 0
        if suffix != ".y4m" and even and "yuv420p" in formats:
            return "yuv420p"
        if "yuv444p" in formats or suffix == ".y4m":
            return "yuv444p"
        self.abort()
        raise InputError(f"codec '{codec}' cannot hold a {width}x{height} picture (odd size needs 4:4:4); pick another")

    def _frame(self, rgb: np.ndarray) -> av.VideoFrame:
        width, height = self.stream.width, self.stream.height
        if rgb.shape[:2] != (height, width):  # the playable default's even size: repeat the last row / column
            rgb = np.pad(rgb, ((0, height - rgb.shape[0]), (0, width - rgb.shape[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if self.pix_fmt == "rgb24":
            return frame
        if self.pix_fmt in ("bgr0", "gbrp"):
            return frame.reformat(format=self.pix_fmt)
        return frame.reformat(
            format=self.pix_fmt,
            dst_colorspace=_MATRIX_TO_SWS.get(self.colour.matrix, Colorspace.ITU709),
            src_color_range=ColorRange.JPEG,
            dst_color_range=ColorRange.JPEG if self.full_range else ColorRange.MPEG,
        )

    def _failed(self, e: BaseException) -> Exception:
        if self.pipe is not None and isinstance(e, BrokenPipeError):
            return PipeClosed()
        return OutputError(f"cannot write {self.name}: {getattr(e, 'strerror', None) or e}")

    @property
    def name(self) -> str:
        return PIPE_NAME["w"] if self.pipe is not None else str(self.path)

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        frame = self._frame(rgb)
        if self.cfr is not None:
            slot = self.cfr.slot_of(pts)
            if slot > MAX_CFR_FRAMES:
                at, kind = float(pts * self.cfr.time_base), _kind(self.path.suffix.lower(), self.pipe)
                raise OutputError(f"cannot write {self.name}: a frame is shown at {at:.0f} s, and a constant-rate "
                                  f"{kind} would need more than {MAX_CFR_FRAMES:,} frames to reach it; write .mkv or "
                                  ".mp4, which keep the frames' own times")
            while self._held is not None and self.frames_written < slot:  # the frame before, where it is on screen
                self._encode(self._held, self.frames_written)
            self._held = frame  # dropped if the next frame takes its output frame; else written when that one comes
            return
        if self.time_base is not None:
            frame.pts, frame.time_base, frame.duration = pts, self.time_base, self.frame_ticks
            self._check_tick(pts)
        else:
            frame.pts = self.frames_written
        self._encode(frame)

    def _encode(self, frame: av.VideoFrame, pts: int | None = None) -> None:
        if pts is not None:
            frame.pts = pts
        self.frames_written += 1
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            raise self._failed(e) from None

    def _check_tick(self, pts: int) -> None:
        """Say (once) when two frames fall on one tick of the output's clock (Matroska counts milliseconds; the MP4
        family, the stream's time base): a stream whose frames are closer than that shows one of them only."""
        if self._tick_said:
            return
        if self._last_tick is None:
            try:
                self.container.start_encoding()  # the muxer's time base is known once its header is written
            except (av.error.FFmpegError, OSError) as e:
                raise self._failed(e) from None
        tick = Fraction(self.stream.time_base)
        at = _round_half_away(pts * self.time_base / tick)  # as FFmpeg rescales a timestamp
        if self._last_tick is not None and at <= self._last_tick[1]:
            apart = float((pts - self._last_tick[2]) * self.time_base) * 1000
            self.notes(f"frames {self._last_tick[0]} and {self.frames_written} of the output are shown {apart:.3g} ms "
                       f"apart, closer than {_kind(self.path.suffix.lower(), self.pipe)}'s ticks of "
                       f"{float(tick) * 1000:.3g} ms: they share a time in the output, where players show one of them "
                       "(said for the first such pair only)")
            self._tick_said = True
        self._last_tick = (self.frames_written, at, pts)

    def write_audio(self, packet) -> None:
        """Mux one audio packet (container.AudioPacket on the output's clock); DamagedAudio if it cannot be."""
        if self.audio is not None:
            self.audio.write(packet)

    def close(self) -> None:
        try:
            if self.cfr is not None and self._held is not None:  # the last frame, shown for an average frame
                self._encode(self._held, self.frames_written)
                self._held = None
            for packet in self.stream.encode():
                self.container.mux(packet)
            if self.audio is not None:
                try:
                    self.audio.close()
                except DamagedAudio as e:
                    self.audio_damage = e  # the video is complete: it is published all the same
            self.container.close()
            if self.pipe is not None:
                self.pipe.flush()
        except (av.error.FFmpegError, OSError) as e:
            self.abort()
            raise self._failed(e) from None
        if self.tmp is not None:
            os.chmod(self.tmp, 0o644)
            _publish(self.tmp, self.path)

    def abort(self) -> None:
        try:
            container = getattr(self, "container", None)
            if container is not None:
                container.close()
        except Exception:
            pass
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class _ConstantRate:
    """Timed frames on a constant-rate clock (ffmpeg's -fps_mode cfr): output frame k, shown from k / fps to
    (k + 1) / fps, is the frame on screen at the middle of that interval. So a frame shown at t (pts x time base)
    takes the output frames from round(t x fps) to the next frame's first, none of them more than half an output
    frame from its time; a frame the next one replaces within the same output frame is dropped, and the last frame
    takes one."""

    time_base: Fraction
    fps: Fraction

    def slot_of(self, pts: int) -> int:
        """The first output frame of the frame shown at `pts`."""
        return _round_half_away(pts * self.time_base * self.fps)


def _round_half_away(x: Fraction) -> int:
    """x to the nearest integer, halves away from zero (av_rescale_q's rounding)."""
    n = math.floor(abs(x) + Fraction(1, 2))
    return n if x >= 0 else -n


def _kind(suffix: str, pipe) -> str:
    return "y4m" if pipe is not None or suffix == ".y4m" else suffix.lstrip(".")


def check_sink_path(path: Path, codec: str | None = None, crf: int | None = None, lossless: bool = False) -> None:
    """Refuse an output we could not write before any work is done."""
    if lossless and (codec or crf is not None):
        raise InputError("--lossless picks the codec itself: give it without --codec/--crf")
    if is_stdio(path):
        if codec or crf is not None:
            raise InputError("'-' writes y4m to stdout (exact 4:4:4); --codec/--crf apply to video files")
        if sys.stdout is None or sys.stdout.isatty():
            raise InputError("output '-' writes y4m to stdout, but stdout is a terminal: pipe it on "
                             "(vcodec decode in.hfc - | ffplay -) or name a file")
        return
    if is_frame_folder(path):
        if codec or crf is not None:
            raise InputError("--codec/--crf apply to video outputs, not to a folder of PNG frames")
        check_frame_folder_target(named_path(path))
        return
    if path.suffix.lower() not in _LOSSLESS_CODECS:
        raise InputError(f"unsupported output type '{path.suffix}' (use {', '.join(sorted(VIDEO_SUFFIXES))}, a folder "
                         "or - for y4m on stdout)")
    if codec:
        try:
            av.codec.Codec(codec, "w")
        except Exception:
            raise InputError(f"unknown or unavailable encoder '{codec}'") from None
    if crf is not None and not 0 <= crf <= 63:
        raise InputError("--crf must be in 0..63")


def takes_audio(path: str | os.PathLike) -> bool:
    """Whether an output of this name gets the stream's audio (PNG frames and y4m hold video only)."""
    return not is_stdio(path) and not is_frame_folder(Path(path)) and Path(path).suffix.lower() in AUDIO_SUFFIXES


def open_sink(path: str | os.PathLike, width: int, height: int, fps: Fraction, colour: Colour,
              codec: str | None = None, crf: int | None = None, lossless: bool = False,
              audio: list | None = None, notes=None, time_base: Fraction | None = None,
              display: Display | None = None) -> Sink:
    """Where decoded frames go: a video file (with `audio`, container.AudioStreams, where it can hold them), a
    folder of PNG frames, or (`-`) y4m on stdout. With `time_base` the frames come with their own times, and
    `display` is the stream's display metadata: where the output holds them they are written, else `notes` hears so."""
    notes = notes or (lambda note: None)
    if is_stdio(path):
        check_sink_path(path, codec, crf, lossless)
        return VideoSink(Path(STDIO), width, height, fps, colour, pipe=sys.stdout.buffer, notes=notes,
                         time_base=time_base, display=display)
    path = Path(path)
    check_sink_path(path, codec, crf, lossless)
    if is_frame_folder(path):
        from vcodec.display import describe

        if time_base is not None:
            notes("the stream's frame times (a variable frame rate) are not written: PNG frames hold none")
        if display is not None:
            notes(f"the stream's {describe(display)} is not written: PNG frames hold no display metadata")
        return FolderSink(path)
    return VideoSink(path, width, height, fps, colour, codec, crf, lossless, audio=audio, notes=notes,
                     time_base=time_base, display=display)
