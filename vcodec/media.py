"""Reading and writing pictures: anything PyAV opens, .y4m, folders of PNG frames, single images.

Frames are uint8 RGB arrays (H, W, 3), streamed one at a time: a video is never held in memory whole. YUV sources
are converted with their own matrix and range (BT.601 / BT.709 from their tags; untagged ones the way players
guess: 709 from 720 lines up), which the stream records so that `decode` writes YUV back with the same matrix.
Writers fill a temp file (or folder) beside the output and rename it into place on `close()`.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from vcodec.container import MAX_SIDE, Colour
from vcodec.errors import InputError, OutputError
from vcodec.paths import named_path, natural_key

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


class Source:
    """An opened input. Iterate `frames(start, count)` once; close() (or use as a context manager) afterwards."""

    info: SourceInfo

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        raise NotImplementedError

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


class VideoSource(Source):
    def __init__(self, path: Path, fps: Fraction | None):
        try:
            self.container = av.open(str(path))
        except FileNotFoundError:
            raise InputError(f"input not found: {path}") from None
        except (av.error.FFmpegError, ValueError, OSError) as e:
            raise InputError(f"cannot open {path}: not a video or image PyAV can read ({e})") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{path} has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.path = path
        ctx = self.stream.codec_context
        rate = fps or self.stream.average_rate or self.stream.guessed_rate or DEFAULT_FPS
        frames = self.stream.frames or None
        if not ctx.width or not ctx.height:
            self.container.close()
            raise InputError(f"{path}: video stream has no frame size")
        try:
            check_picture_size(ctx.width, ctx.height, path)
        except InputError:
            self.container.close()
            raise
        self._first: av.VideoFrame | None = None
        self._iter = self._decoded()
        try:
            self._first = next(self._iter)
        except StopIteration:
            self.container.close()
            raise InputError(f"{path} has no video frames") from None
        colour = _colour_of(self._first)
        self.info = SourceInfo(
            self._first.width, self._first.height, Fraction(rate), frames, colour,
            f"{ctx.name} {self._first.format.name} {self._first.width}x{self._first.height}",
        )

    def _decoded(self) -> Iterator[av.VideoFrame]:
        try:
            yield from self.container.decode(self.stream)
        except av.error.FFmpegError as e:
            raise InputError(f"{self.path}: cannot decode video ({e})") from None

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        def all_frames():
            if self._first is not None:
                first, self._first = self._first, None
                yield first
            yield from self._iter

        n = 0
        for i, frame in enumerate(all_frames()):
            if i < start:
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


def open_source(path: str | os.PathLike, fps: Fraction | None = None) -> Source:
    path = Path(path)
    if path.is_dir():
        return FolderSource(path, fps)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path, fps)
    return VideoSource(path, fps)


# ------------------------------------------------------------------------------------------------------ writing
# Default codec per container: exact (lossless RGB) unless the user asks for something else.
_DEFAULT_CODECS = {".mp4": "libx264rgb", ".mov": "libx264rgb", ".m4v": "libx264rgb", ".mkv": "ffv1", ".avi": "ffv1",
                   ".webm": "libvpx-vp9", ".y4m": "rawvideo"}
_RGB_CODECS = {"libx264rgb": "rgb24", "ffv1": "bgr0"}
VIDEO_SUFFIXES = set(_DEFAULT_CODECS)


def is_frame_folder(path: Path) -> bool:
    return path.is_dir() or str(path).endswith(os.sep) or path.suffix == ""


class Sink:
    """Where decoded frames go. write() frames in order, then close() to publish, or abort() to leave nothing."""

    frames_written = 0

    def write(self, rgb: np.ndarray) -> None:
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

    def write(self, rgb: np.ndarray) -> None:
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


class VideoSink(Sink):
    def __init__(self, path: Path, width: int, height: int, fps: Fraction, colour: Colour,
                 codec: str | None = None, crf: int | None = None):
        suffix = path.suffix.lower()
        self.path = path
        self.colour = colour
        codec = codec or _DEFAULT_CODECS[suffix]
        parent = path.parent if str(path.parent) else Path(".")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=parent)
            os.close(fd)
        except OSError as e:
            raise OutputError(f"cannot write to {parent}: {e.strerror}") from None
        self.tmp = Path(tmp)
        try:
            self.container = av.open(str(self.tmp), "w", format="yuv4mpegpipe" if suffix == ".y4m" else None)
            self.stream = self.container.add_stream(codec, rate=fps)
        except (av.error.FFmpegError, ValueError) as e:
            self.abort()
            raise InputError(f"cannot write {suffix} with codec '{codec}': {e}") from None
        self.stream.width, self.stream.height = width, height
        self.stream.time_base = Fraction(1, 1) / fps
        self.pix_fmt = self._pixel_format(codec, width, height, suffix)
        self.stream.pix_fmt = self.pix_fmt
        options = {}
        if codec == "libx264rgb" and crf is None:
            options["qp"] = "0"  # lossless
        elif codec == "libvpx-vp9" and crf is None:
            options["lossless"] = "1"
        elif crf is not None:
            options["crf"] = str(crf)
        self.stream.options = options
        if self.pix_fmt not in ("rgb24", "bgr0", "gbrp"):
            ctx = self.stream.codec_context
            ctx.colorspace = colour.matrix if colour.matrix else 1
            ctx.color_range = 1  # limited ("tv") range: what players assume
            ctx.color_primaries = colour.primaries
            ctx.color_trc = colour.transfer
        self.frames_written = 0

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

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if self.pix_fmt != "rgb24":
            if self.pix_fmt in ("bgr0", "gbrp"):
                frame = frame.reformat(format=self.pix_fmt)
            else:
                frame = frame.reformat(
                    format=self.pix_fmt,
                    dst_colorspace=_MATRIX_TO_SWS.get(self.colour.matrix, Colorspace.ITU709),
                    src_color_range=ColorRange.JPEG,
                    dst_color_range=ColorRange.MPEG,
                )
        frame.pts = self.frames_written
        self.frames_written += 1
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            raise OutputError(f"cannot write {self.path}: {getattr(e, 'strerror', None) or e}") from None

    def close(self) -> None:
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
        except (av.error.FFmpegError, OSError) as e:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {e}") from None
        os.chmod(self.tmp, 0o644)
        _publish(self.tmp, self.path)

    def abort(self) -> None:
        try:
            container = getattr(self, "container", None)
            if container is not None:
                container.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)


def check_sink_path(path: Path, codec: str | None = None, crf: int | None = None) -> None:
    """Refuse an output we could not write before any work is done."""
    if is_frame_folder(path):
        if codec or crf is not None:
            raise InputError("--codec/--crf apply to video outputs, not to a folder of PNG frames")
        check_frame_folder_target(named_path(path))
        return
    if path.suffix.lower() not in _DEFAULT_CODECS:
        raise InputError(f"unsupported output type '{path.suffix}' (use {', '.join(sorted(VIDEO_SUFFIXES))} or a folder)")
    if codec:
        try:
            av.codec.Codec(codec, "w")
        except Exception:
            raise InputError(f"unknown or unavailable encoder '{codec}'") from None
    if crf is not None and not 0 <= crf <= 63:
        raise InputError("--crf must be in 0..63")


def open_sink(path: str | os.PathLike, width: int, height: int, fps: Fraction, colour: Colour,
              codec: str | None = None, crf: int | None = None) -> Sink:
    path = Path(path)
    check_sink_path(path, codec, crf)
    if is_frame_folder(path):
        return FolderSink(path)
    return VideoSink(path, width, height, fps, colour, codec, crf)
