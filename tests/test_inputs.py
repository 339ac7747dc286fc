"""Bad and unusual inputs to encode: each works correctly, or ends in one clear line and a non-zero exit code,
and never leaves a half-written output behind."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vcodec.cli import main
from vcodec.errors import EXIT_INTERRUPTED, EXIT_IO, EXIT_USAGE

from conftest import REPO, SAMPLE, read_video, sample_frames, write_pngs


def run(*args) -> int:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code


def write_video(path: Path, frames: list[np.ndarray], codec: str, pix_fmt: str, pts: list[int] | None = None,
                rate: int = 25, src_format: str = "rgb24") -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        if pts is not None:
            s.time_base = Fraction(1, 1000)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format=src_format).reformat(format=pix_fmt)
            vf.pts = pts[i] if pts is not None else i
            if pts is not None:
                vf.time_base = Fraction(1, 1000)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def encode_ok(src: Path, tmp: Path, *extra) -> list[np.ndarray]:
    stream = tmp / "out.hfc"
    assert run("encode", src, stream, *extra) == 0
    back = tmp / "back"
    assert run("decode", stream, back) == 0
    return read_video(back)[0]


def only(tmp: Path, *names: str) -> None:
    assert sorted(os.listdir(tmp)) == sorted(names), os.listdir(tmp)


@pytest.mark.parametrize("w,h", [(1, 1), (17, 9), (64, 64), (65, 63)])
def test_tiny_and_odd_sizes(tmp_path, w, h):
    frame = np.random.default_rng(w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    src = write_pngs(tmp_path / "src", [frame])
    frames = encode_ok(src, tmp_path)
    assert len(frames) == 1 and frames[0].shape == (h, w, 3)


def test_single_frame_video(tmp_path):
    src = write_video(tmp_path / "one.mkv", sample_frames(1, 96, 64), "ffv1", "bgr0")
    assert len(encode_ok(src, tmp_path)) == 1


def test_grayscale_png_and_video(tmp_path):
    gray = sample_frames(2, 64, 48)[0].mean(axis=2).astype(np.uint8)
    from PIL import Image

    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    frames = encode_ok(tmp_path / "g.png", tmp_path)
    assert frames[0].shape == (48, 64, 3)
    (tmp_path / "out.hfc").unlink()
    import shutil

    shutil.rmtree(tmp_path / "back")
    src = write_video(tmp_path / "g.mkv", [np.repeat(gray[..., None], 3, 2)] * 3, "ffv1", "gray")
    src_frames, _ = read_video(src)
    assert np.array_equal(src_frames[0][..., 0], gray) and np.array_equal(src_frames[0][..., 2], gray)
    assert len(encode_ok(src, tmp_path)) == 3


def test_ten_bit_video(tmp_path):
    frames = [f.astype(np.uint16) * 257 for f in sample_frames(2, 96, 64)]  # 8 -> 16 bit full scale
    src = write_video(tmp_path / "ten.mkv", frames, "ffv1", "yuv420p10le", src_format="rgb48le")
    back = encode_ok(src, tmp_path)
    assert len(back) == 2 and back[0].shape == (64, 96, 3)
    src_frames, _ = read_video(src)
    assert np.mean(np.abs(src_frames[0].astype(int) - sample_frames(1, 96, 64)[0])) < 2


def test_alpha_is_dropped(tmp_path):
    rgba = np.concatenate([sample_frames(1, 64, 48)[0], np.full((48, 64, 1), 128, np.uint8)], axis=2)
    from PIL import Image

    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    assert encode_ok(tmp_path / "a.png", tmp_path)[0].shape == (48, 64, 3)


def test_variable_frame_rate_becomes_constant(tmp_path):
    frames = sample_frames(6, 96, 64)
    src = write_video(tmp_path / "vfr.mkv", frames, "ffv1", "bgr0", pts=[0, 40, 100, 120, 200, 230])
    stream = tmp_path / "vfr.hfc"
    assert run("encode", src, stream) == 0
    from vcodec import api

    info = api.probe(stream)
    assert info["frame_count"] == 6 and info["fps_float"] > 0


def test_huge_frames_are_refused(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (7700, 4400), (10, 20, 30)).save(tmp_path / "huge.png")
    assert run("encode", tmp_path / "huge.png", tmp_path / "h.hfc") == EXIT_USAGE
    assert "larger than" in capsys.readouterr().err
    only(tmp_path, "huge.png")


def test_not_a_video(tmp_path, capsys):
    (tmp_path / "junk.mp4").write_bytes(os.urandom(5000))
    assert run("encode", tmp_path / "junk.mp4", tmp_path / "j.hfc") == EXIT_USAGE
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    only(tmp_path, "junk.mp4")


def test_zero_frames(tmp_path, capsys):
    assert run("encode", SAMPLE, tmp_path / "z.hfc", "--start", "500") == EXIT_USAGE
    assert "no frames" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run("encode", tmp_path / "empty", tmp_path / "z.hfc") == EXIT_USAGE
    only(tmp_path, "empty")


def test_png_folder_with_gap_or_mixed_sizes(tmp_path, capsys):
    frames = sample_frames(3, 64, 48)
    gap = write_pngs(tmp_path / "gap", frames)
    (gap / "f002.png").unlink()
    assert run("encode", gap, tmp_path / "g.hfc") == EXIT_USAGE
    assert "f001.png to f003.png" in capsys.readouterr().err
    mixed = write_pngs(tmp_path / "mixed", frames[:2] + [sample_frames(1, 32, 32)[0]])
    assert run("encode", mixed, tmp_path / "m.hfc") == EXIT_USAGE
    assert "f003.png is 32x32" in capsys.readouterr().err
    only(tmp_path, "gap", "mixed")


def test_unwritable_output(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert run("encode", SAMPLE, tmp_path / "file" / "o.hfc") == EXIT_IO
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def _limited_run(args: list[str], limit: int, cwd: Path) -> subprocess.CompletedProcess:
    """Run the CLI with files capped at `limit` bytes: the kernel's way of saying the disk is full (EFBIG)."""

    def cap():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "vcodec", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          preexec_fn=cap, timeout=600)


def test_full_disk_while_encoding_and_decoding(tmp_path, tiny_stream):
    src = write_pngs(tmp_path / "src", sample_frames(3, 128, 64))
    for args, limit in ((["encode", str(src), "out.hfc"], 300), (["decode", str(tiny_stream), "out.mkv"], 2000)):
        done = _limited_run(args, limit, tmp_path)
        assert done.returncode == EXIT_IO, done.stderr
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and "cannot write out." in errors[0] and "File too large" in errors[0], done.stderr
        assert "Traceback" not in done.stderr
        only(tmp_path, "src")


def test_ctrl_c_mid_encode_leaves_nothing(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # A suite started as a background job inherits SIGINT ignored, and Python keeps it so: give Ctrl-C back.
    proc = subprocess.Popen([sys.executable, "-m", "vcodec", "encode", str(SAMPLE), "out.hfc"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    # Wait until the encoder is writing packets into its temp file, then interrupt it.
    while time.time() < deadline:
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        if temps and temps[0].stat().st_size > 2000:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def _blank_png(path: Path, width: int, height: int) -> Path:
    """An all-black RGB PNG written row by row: a huge picture costs a small file and no memory to make."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(1)
    row = bytes(1 + 3 * width)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_huge_picture_is_refused_before_its_pixels_are_decoded(tmp_path):
    """8192x8192 RGB is 200 MB of pixels: the size in the PNG header must refuse it before any are decoded."""
    huge = _blank_png(tmp_path / "huge.png", 8192, 8192)
    script = (
        "import resource, sys\n"
        "from vcodec import api, codec\n"
        "from vcodec.errors import InputError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    api.encode(sys.argv[1], sys.argv[2])\n"
        "except InputError as e:\n"
        "    print(e)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"  # KiB on Linux
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", script, str(huge), str(tmp_path / "h.hfc")], capture_output=True,
                          text=True, env=env, timeout=300)
    message, grown_mb = done.stdout.strip().splitlines()
    assert "8192x8192" in message and "33,177,600 pixels" in message and "16384" in message, message
    assert int(grown_mb) < 64, f"peak memory grew by {grown_mb} MB before the refusal"
    only(tmp_path, "huge.png")


@pytest.mark.parametrize("kind", ["image", "folder", "video"])
def test_picture_wider_than_the_container_is_refused(tmp_path, capsys, kind):
    """16385 pixels wide is few pixels but more than a stream can hold: refused, not coded into a broken stream."""
    frame = np.zeros((16, 16385, 3), np.uint8)
    if kind == "image":
        src = _blank_png(tmp_path / "wide.png", 16385, 16)
    elif kind == "folder":
        src = tmp_path / "wide"
        src.mkdir()
        _blank_png(src / "f001.png", 16385, 16)
    else:
        src = write_video(tmp_path / "wide.mkv", [frame, frame], "ffv1", "bgr0")
    assert run("encode", src, tmp_path / "w.hfc") == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "16385x16" in err and "16384 per side" in err, err
    only(tmp_path, src.name)
