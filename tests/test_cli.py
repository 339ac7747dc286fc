"""The command line as a user meets it: round trips of the sample clip, info, odd sizes, errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vcodec.cli import main
from vcodec.codec import DEFAULT_GOP
from vcodec.errors import EXIT_DAMAGED, EXIT_IO, EXIT_MODEL, EXIT_USAGE

from conftest import REPO, SAMPLE, read_video, sample_frames, write_pngs


def run(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code


@pytest.fixture(scope="module")
def sample_stream(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "bikes.hfc"
    assert run("encode", SAMPLE, out, "-q", "3") == 0
    return out


def test_sample_clip_round_trip(sample_stream, tmp_path, capsys):
    back = tmp_path / "back.mp4"
    assert run("decode", sample_stream, back) == 0
    frames, fps = read_video(back)
    assert len(frames) == 48
    assert frames[0].shape == (272, 640, 3)
    assert fps == Fraction(25)
    original = sample_frames(48)
    psnr = [10 * np.log10(255**2 / np.mean((a.astype(float) - b) ** 2)) for a, b in zip(frames, original)]
    assert min(psnr) > 20  # a real reconstruction, not noise


def test_info_json_accounts_for_every_byte(sample_stream, capsys):
    capsys.readouterr()
    assert run("info", sample_stream, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["frame_count"] == len(data["frames"]) == 48
    assert (data["width"], data["height"], data["fps"]) == (640, 272, "25/1")
    assert data["index_bytes"] == 8 + 13 * 48 + 4 + 12  # docs/FORMAT.md: mark+count, 13 B per entry, CRC, trailer
    assert data["header_bytes"] + sum(f["bytes"] for f in data["frames"]) + data["index_bytes"] == data["file_bytes"]
    assert data["file_bytes"] == sample_stream.stat().st_size
    assert data["damage"] is None
    assert all(f["quality"] == 3 for f in data["frames"])
    types = [f["type"] for f in data["frames"]]
    # Every GOP starts with an I-frame; the encoder makes any other frame one only where that is cheaper.
    assert all(types[i] == "I" for i in range(0, 48, DEFAULT_GOP)) and types.count("P") >= 24
    total_bpp = data["file_bytes"] * 8 / (640 * 272 * 48)
    assert data["bpp"] == pytest.approx(total_bpp)


def test_info_table(sample_stream, capsys):
    assert run("info", sample_stream) == 0
    text = capsys.readouterr().out
    assert "640x272" in text and "intra-n64m128" in text and "25/1" in text
    assert "matrix 6 (BT.601" in text  # the sample is tagged SMPTE 170M


@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".y4m", "/"])
def test_odd_size_round_trips(tmp_path, suffix):
    src = write_pngs(tmp_path / "src", sample_frames(2, 97, 75, start=5))
    stream = tmp_path / "odd.hfc"
    assert run("encode", src, stream, "--fps", "30000/1001") == 0
    out = tmp_path / ("out" + suffix) if suffix != "/" else tmp_path / "frames"
    exact = ["--lossless"] if suffix == ".mp4" else []  # the playable default is 4:2:0 (tests/test_playable.py)
    assert run("decode", stream, out, *exact) == 0
    frames, fps = read_video(out)
    assert len(frames) == 2 and frames[0].shape == (75, 97, 3)
    if suffix != "/":
        assert fps == Fraction(30000, 1001)
    if suffix in (".mkv", ".mp4", "/"):  # lossless containers return exactly the decoded pixels
        ref = tmp_path / "ref"
        assert run("decode", stream, ref) == 0
        for a, b in zip(frames, read_video(ref)[0]):
            assert np.array_equal(a, b)


def test_single_image_and_frame_options(tmp_path):
    img = write_pngs(tmp_path / "img", sample_frames(1, 80, 40)) / "f001.png"
    stream = tmp_path / "img.hfc"
    assert run("encode", img, stream) == 0
    part = tmp_path / "part.hfc"
    assert run("encode", SAMPLE, part, "--start", "40", "--frames", "3", "-q", "0") == 0
    frames, _ = read_video(_decoded(tmp_path, part))
    assert len(frames) == 3


def _decoded(tmp_path: Path, stream: Path) -> Path:
    out = tmp_path / (stream.stem + "-dec")
    assert run("decode", stream, out) == 0
    return out


def test_refuses_to_overwrite_without_y(sample_stream, tmp_path, capsys):
    target = tmp_path / "exists.mp4"
    target.write_bytes(b"keep me")
    assert run("decode", sample_stream, target) == EXIT_USAGE
    assert target.read_bytes() == b"keep me"
    assert "-y" in capsys.readouterr().err


@pytest.mark.parametrize("args,code,words", [
    (["encode", "missing.mp4", "x.hfc"], EXIT_USAGE, "not found"),
    (["encode", "{sample}", "x.hfc", "-q", "9"], EXIT_USAGE, "quality"),
    (["encode", "{sample}", "x.hfc", "--device", "tpu"], EXIT_USAGE, "device"),
    (["encode", "{sample}", "x.hfc", "--model", "nonexistent-model"], EXIT_MODEL, "not found"),
    (["encode", "{sample}", "no/such/folder/x.hfc"], EXIT_IO, "does not exist"),
    (["decode", "{sample}", "x.mp4"], EXIT_DAMAGED, "not an .hfc stream"),
    (["decode", "{stream}", "x.gif"], EXIT_USAGE, "unsupported output"),
    (["info", "missing.hfc"], EXIT_USAGE, "not found"),
    (["encode", "{sample}"], EXIT_USAGE, "Missing argument"),
    (["encode", "{sample}", "x.hfc", "--bogus"], EXIT_USAGE, "No such option"),
    (["encode", "{sample}", "x.hfc", "--precision", "fp8"], EXIT_USAGE, "precision"),
    (["decode", "{stream}", "x.mp4", "--precision", "fp8"], EXIT_USAGE, "precision"),
])
def test_errors_are_one_line_with_exit_code(sample_stream, tmp_path, capsys, monkeypatch, args, code, words):
    monkeypatch.chdir(tmp_path)
    args = [a.format(sample=SAMPLE, stream=sample_stream) for a in args]
    assert run(*args) == code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert words.lower() in lines[0].lower()
    assert "Traceback" not in captured.err
    assert sorted(os.listdir(tmp_path)) == []  # nothing half-written


def test_damaged_stream_writes_intact_frames_and_exits_2(sample_stream, tmp_path, capsys):
    data = bytearray(sample_stream.read_bytes())
    from vcodec.container import StreamReader

    with StreamReader(sample_stream) as r:
        offset = r.index()[5].offset + 40  # inside frame 5's packet
    data[offset] ^= 0x55
    bad = tmp_path / "bad.hfc"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.mkv"
    assert run("decode", bad, out) == EXIT_DAMAGED
    err = capsys.readouterr().err
    assert "frame 5" in err and "5 intact frames" in err
    assert len(read_video(out)[0]) == 5
    assert run("info", bad) == EXIT_DAMAGED


def test_wrong_weights_are_named(sample_stream, tmp_path, bundle, capsys):
    other = tmp_path / "other.safetensors"
    data = bytearray(bundle.path.read_bytes())
    other.write_bytes(bytes(data))
    # Same tensors, different metadata -> different hash: the stream must refuse them.
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    with safe_open(str(bundle.path), framework="pt") as f:
        meta = dict(f.metadata())
    meta["vcodec.info"] = "{}"
    save_file(load_file(str(bundle.path)), str(other), metadata=meta)
    assert run("decode", sample_stream, tmp_path / "x.mkv", "--model", other) == EXIT_MODEL
    err = capsys.readouterr().err
    assert bundle.hash_hex[:16] in err or "sha256" in err
    assert not (tmp_path / "x.mkv").exists()


def test_console_script_entry_point(tmp_path):
    """The real process: exit code and one line on stderr, no traceback."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "vcodec", "decode", str(tmp_path / "none.hfc"), str(tmp_path / "o.mp4")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == EXIT_USAGE
    assert done.stderr.strip().count("\n") == 0 and "not found" in done.stderr
    done = subprocess.run([sys.executable, "-m", "vcodec", "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("vcodec ")
