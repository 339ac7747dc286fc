"""Pipes: `vcodec encode - out.hfc` reads y4m from stdin and `vcodec decode in.hfc -` writes y4m to stdout, byte for
byte what the file round trip gives, with nothing else on stdout, flat memory, and a quiet end when the reader of
the pipe goes away. These run the real command in fresh processes: stdin and stdout are real pipes here."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vcodec import api
from vcodec.errors import EXIT_DAMAGED, EXIT_USAGE

from conftest import REPO, sample_frames, write_pngs
from fuzz.mutations import layout

VCODEC = [sys.executable, "-m", "vcodec"]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def vcodec(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([*VCODEC, *map(str, args)], env=ENV, stderr=subprocess.PIPE, **kw)


def error_lines(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    """Three frames of 65x49 (odd: y4m keeps the size), an I-frame and two P-frames."""
    root = tmp_path_factory.mktemp("pipes")
    src = write_pngs(root / "src", sample_frames(3, 65, 49, start=12))
    out = root / "s.hfc"
    api.encode(src, out, quality=2, gop=4, fps=25)
    return out


def test_pipe_round_trip_equals_the_file_round_trip_byte_for_byte(stream, tmp_path):
    """decode - | encode -  against  decode to .y4m, then encode that file; stdout carries the y4m and nothing else."""
    decoder = vcodec("decode", stream, "-", stdout=subprocess.PIPE)
    encoder = vcodec("encode", "-", tmp_path / "piped.hfc", "-q", "2", "--gop", "4", stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE)
    carried = bytearray()
    while chunk := decoder.stdout.read(65536):  # a tee, so the bytes on the pipe can be compared too
        carried += chunk
        encoder.stdin.write(chunk)
    encoder.stdin.close()
    decoder_err, encoder_out, encoder_err = decoder.stderr.read(), encoder.stdout.read(), encoder.stderr.read()
    assert decoder.wait(120) == 0 and encoder.wait(120) == 0, (decoder_err, encoder_err)
    assert "-> stdout" in decoder_err.decode()  # the summary went to stderr
    assert "piped.hfc" in encoder_out.decode()

    api.decode(stream, tmp_path / "file.y4m", device="cpu")
    api.encode(tmp_path / "file.y4m", tmp_path / "file.hfc", quality=2, gop=4)
    assert bytes(carried) == (tmp_path / "file.y4m").read_bytes()
    assert carried.startswith(b"YUV4MPEG2 W65 H49 F25:1") and carried.count(b"FRAME\n") == 3
    assert (tmp_path / "piped.hfc").read_bytes() == (tmp_path / "file.hfc").read_bytes()


@pytest.fixture(scope="module")
def long_stream(tmp_path_factory) -> Path:
    """Four frames of 320x240: 0.9 MB of y4m, more than a pipe holds (64 KiB here), so the decoder must still be
    writing when its reader goes away, however fast it decodes."""
    root = tmp_path_factory.mktemp("pipes-long")
    src = write_pngs(root / "src", sample_frames(4, 320, 240, start=12))
    out = root / "long.hfc"
    api.encode(src, out, quality=0, gop=4, fps=25)
    return out


def test_reader_going_away_ends_quietly(long_stream):
    decoder = vcodec("decode", long_stream, "-", stdout=subprocess.PIPE)
    assert decoder.stdout.read(100).startswith(b"YUV4MPEG2")
    decoder.stdout.close()  # like `| head -c 100`
    err = decoder.stderr.read()
    assert decoder.wait(120) == 0 and err.strip() == b"", err


def test_damaged_stream_to_stdout_writes_the_intact_frames(stream, tmp_path):
    data = bytearray(stream.read_bytes())
    off, head, payload = layout(bytes(data)).packets[1]
    data[off + head + payload // 2] ^= 0x10
    bad = tmp_path / "bad.hfc"
    bad.write_bytes(bytes(data))
    decoder = vcodec("decode", bad, "-", stdout=subprocess.PIPE)
    out, err = decoder.communicate(timeout=120)
    assert decoder.returncode == EXIT_DAMAGED
    lines = error_lines(err)
    assert len(lines) == 1 and "frame 1" in lines[0] and "stdout" in lines[0], lines
    api.decode(stream, tmp_path / "good.y4m", device="cpu", frames=1)
    assert out == (tmp_path / "good.y4m").read_bytes()  # frame 0, exactly as a file would hold it


def test_pipe_errors_are_one_line(stream, tmp_path):
    done = subprocess.run([*VCODEC, "encode", "-", str(tmp_path / "x.hfc")], input=b"not a y4m stream\n" * 10,
                          capture_output=True, env=ENV, timeout=120)
    lines = error_lines(done.stderr)
    assert done.returncode == EXIT_USAGE and len(lines) == 1 and "y4m" in lines[0], done.stderr
    done = subprocess.run([*VCODEC, "decode", str(stream), "-", "--codec", "libx264"], capture_output=True, env=ENV,
                          timeout=120)
    assert done.returncode == EXIT_USAGE and done.stdout == b"" and "stdout" in done.stderr.decode()
    main, other = os.openpty()  # stdout a terminal: video there would only garble it
    try:
        done = subprocess.run([*VCODEC, "decode", str(stream), "-"], stdout=other, stderr=subprocess.PIPE, env=ENV,
                              timeout=120)
    finally:
        os.close(other)
        os.close(main)
    lines = error_lines(done.stderr)
    assert done.returncode == EXIT_USAGE and len(lines) == 1 and "terminal" in lines[0], done.stderr
    assert sorted(os.listdir(tmp_path)) == []


# Writes a 4:2:0 y4m of FRAMES frames of 640x480 (one textured picture, 460 KB a frame) to stdout, as a pipe would
# bring it: nothing of it is on disk.
Y4M_WRITER = """
import sys
import numpy as np
frames, width, height = int(sys.argv[1]), 640, 480
picture = np.random.default_rng(1).integers(16, 236, width * height * 3 // 2, dtype=np.uint8).tobytes()
out = sys.stdout.buffer
out.write(f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\\n".encode())
for _ in range(frames):
    out.write(b"FRAME\\n" + picture)
"""


def test_memory_stays_flat_on_a_long_piped_input(tmp_path):
    """Peak RSS of `y4m-writer | vcodec encode - ...` for 18 MB and 184 MB of y4m: the reader streams the pipe. Each
    encodes only its last two frames (--start), so the inputs differ in length and in nothing else. Peak RSS varies
    by tens of MB between runs here (how much of torch's libraries a process maps): the short input is measured
    twice and the larger peak taken, and a reader that held the long input would still add some 170 MB."""
    spec = importlib.util.spec_from_file_location("memory_flat", REPO / "benchmarks" / "memory_flat.py")
    memory_flat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory_flat)
    writer = tmp_path / "y4m_writer.py"
    writer.write_text(Y4M_WRITER)
    peaks = {}
    for run, frames in enumerate((40, 400, 40)):
        out = tmp_path / f"out{run}.hfc"
        command = (f"{sys.executable} {writer} {frames} | {sys.executable} -m vcodec encode - {out} "
                   f"--start {frames - 2} -q 0 --gop 1 --device cpu")
        peaks[frames] = max(peaks.get(frames, 0.0), memory_flat.peak_rss_of(["sh", "-c", command]))
        assert api.probe(out)["frame_count"] == 2
    assert peaks[40] > 50, peaks  # the real encoder ran
    assert peaks[400] - peaks[40] < 60, f"peak RSS MB: {peaks} (the long input is 166 MB longer)"
