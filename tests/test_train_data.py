"""Training data: image folders, Vimeo-90k trees (list files, both frame layouts, memory budget), videos; data and
option errors are user errors; the MS-SSIM objective and bf16 autocast train."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vcodec.errors import EXIT_USAGE, InputError
from vcodec.train.data import evenly_spaced, load_sources, pick_frames, vimeo_septuplets
from vcodec.train.loop import train_intra

from conftest import REPO, fixed_loss, train_options as _opts


def _png(path: Path, w: int, h: int, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return path


def _values(pictures: list[torch.Tensor]) -> list[int]:
    return sorted(int(p[0, 0, 0]) for p in pictures)


# ------------------------------------------------------------------------------------------------ image folders
def test_image_folders_are_walked_recursively(tmp_path):
    _png(tmp_path / "a" / "x.png", 80, 80, 1)
    _png(tmp_path / "a" / "b" / "c" / "y.png", 100, 70, 2)
    _png(tmp_path / "small.png", 32, 32, 3)  # under the crop: left out
    _png(tmp_path / "big.png", 1600, 1200, 4)  # lossless: only bounded to the long side
    (tmp_path / "d").mkdir()
    Image.fromarray(np.full((1100, 2048, 3), 5, np.uint8)).save(tmp_path / "d" / "photo.jpg")
    (tmp_path / "notes.txt").write_text("not a picture")
    pictures = load_sources([tmp_path], 64, max_side=1024)
    shapes = sorted(tuple(p.shape) for p in pictures)
    # The JPEG is halved first (lossy and large: 1024x550), the PNG only scaled to a long side of 1024.
    assert shapes == sorted([(3, 80, 80), (3, 70, 100), (3, 768, 1024), (3, 550, 1024)])
    assert all(p.dtype == torch.uint8 for p in pictures)
    # A single file is a source too.
    assert len(load_sources([tmp_path / "a" / "x.png"], 64)) == 1


# ---------------------------------------------------------------------------------------------------- Vimeo-90k
def _vimeo(root: Path, names: list[str], layout: str = "im", size: int = 64) -> dict[str, int]:
    """Septuplets whose frame k (1..7) of septuplet s is filled with the value 10 * s + k."""
    base = {}
    for s, name in enumerate(names, 1):
        for k in range(1, 8):
            frame = f"im{k}.png" if layout == "im" else f"f{k:03d}.png"
            _png(root / "sequences" / name / frame, size, size, 10 * s + k)
        base[name] = 10 * s
    return base


def test_vimeo_reads_only_the_training_list(tmp_path):
    root = tmp_path / "vimeo_septuplet"
    base = _vimeo(root, ["00001/0001", "00001/0002", "00002/0001"])
    (root / "sep_trainlist.txt").write_text("00001/0001\n00001/0002\n")
    (root / "sep_testlist.txt").write_text("00002/0001\n")
    assert [len(s) for s in vimeo_septuplets(root)] == [7, 7]
    # One frame per septuplet by default: the middle one (im4).
    assert _values(load_sources([root], 64)) == [base["00001/0001"] + 4, base["00001/0002"] + 4]
    # Two: the first and the last, the most different pair. The test septuplet never comes in.
    two = _values(load_sources([root], 64, vimeo_frames=2))
    assert two == [11, 17, 21, 27]
    assert not any(v // 10 == 3 for v in _values(load_sources([root], 64, vimeo_frames=7)))


def test_vimeo_f_layout_without_a_training_list(tmp_path):
    root = tmp_path / "vimeo"
    _vimeo(root, ["00001/0001", "00001/0002", "00002/0001"], layout="f")
    # Only the test list: everything else is training data.
    (root / "sep_testlist.txt").write_text("00001/0002\n")
    assert _values(load_sources([root], 64)) == [14, 34]
    # No list at all (a tree with sequences/ only): every septuplet.
    (root / "sep_testlist.txt").unlink()
    assert _values(load_sources([root], 64, vimeo_frames=1)) == [14, 24, 34]
    assert [p.name for p in vimeo_septuplets(root)[0]] == [f"f{k:03d}.png" for k in range(1, 8)]


def test_a_vimeo_tree_inside_a_data_folder_keeps_its_list(tmp_path):
    _png(tmp_path / "photos" / "p.png", 96, 96, 200)
    root = tmp_path / "vimeo_septuplet"
    _vimeo(root, ["00001/0001", "00001/0002"])
    (root / "sep_trainlist.txt").write_text("00001/0002\n")
    assert _values(load_sources([tmp_path], 64)) == [24, 200]


def test_vimeo_is_sampled_evenly_into_the_memory_budget(tmp_path):
    root = tmp_path / "vimeo"
    names = [f"00001/{i:04d}" for i in range(1, 7)]
    _vimeo(root, names)
    (root / "sep_trainlist.txt").write_text("\n".join(names) + "\n")
    frame = 3 * 64 * 64
    notes = []
    got = load_sources([root], 64, max_bytes=3 * frame, say=notes.append)
    assert _values(got) == [14, 34, 54]  # septuplets 1, 3, 5 of 6: spread over the list, the same every time
    assert _values(load_sources([root], 64, max_bytes=3 * frame)) == [14, 34, 54]
    assert "3 of 6" in notes[0]
    assert evenly_spaced(10, 4) == [0, 2, 5, 7] and pick_frames(7, 1) == [3] and pick_frames(7, 3) == [0, 3, 6]
    # Plain pictures are taken whole: over the budget is a clear user error, not a silent cut.
    _png(tmp_path / "photos" / "a.png", 128, 128)
    with pytest.raises(InputError, match="memory budget"):
        load_sources([tmp_path / "photos"], 64, max_bytes=frame)
    # Plain pictures first; Vimeo gets what they leave (here: nothing).
    with pytest.raises(InputError, match="no room left for Vimeo"):
        load_sources([tmp_path / "photos", root], 64, max_bytes=3 * 128 * 128 + 10)


# -------------------------------------------------------------------------------------------------------- video
def _write_video(path: Path, count: int, size: int, tagged: bool = True) -> list[int]:
    """H.264 4:2:0 in BT.709 limited range (tagged as such, or untagged), coded without loss (qp 0): frame i is
    grey 16 + 32 i on the left and saturated red on the right."""
    av = pytest.importorskip("av")
    from av.video.reformatter import ColorRange, Colorspace

    greys = [16 + 32 * i for i in range(count)]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        if tagged:
            stream.codec_context.colorspace = 1
            stream.codec_context.color_range = 1
        for grey in greys:
            rgb = np.zeros((size, size, 3), np.uint8)
            rgb[:, : size // 2] = grey
            rgb[:, size // 2 :] = (200, 40, 40)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
            )
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return greys


@pytest.mark.parametrize("tagged", [True, False])
def test_video_frames_are_sampled_converted_with_their_matrix_and_halved(tmp_path, tagged):
    greys = _write_video(tmp_path / "clip.mp4", 7, 1024, tagged)
    pictures = load_sources([tmp_path], 64, video_every=3)
    assert len(pictures) == 3  # frames 0, 3 and 6
    for pic, grey in zip(pictures, greys[::3]):
        assert tuple(pic.shape) == (3, 512, 512)  # video is lossy: halved when large, like a large JPEG
        assert abs(int(pic[0, 256, 100]) - grey) <= 2
        # BT.709 as tagged, or as players take an untagged stream of 720 lines or more (vcodec.media does the
        # same); read as BT.601 this red would come back about (186, 23, 40).
        red = pic[:, 256, 400].tolist()
        assert max(abs(a - b) for a, b in zip(red, (200, 40, 40))) <= 3, red


# ------------------------------------------------------------------------------------------------------- errors
def _cli(*args) -> int:
    from vcodec.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", "intra", *map(str, args)])
    return done.value.code


def test_data_and_option_errors_are_user_errors(tmp_path, monkeypatch):
    out = ["--out", tmp_path / "ck", "--experiments", tmp_path / "exp", "--device", "cpu", "--steps", "1"]
    with pytest.raises(InputError, match="not found"):
        load_sources([tmp_path / "nonexistent"], 64)
    assert _cli("--data", tmp_path / "nonexistent", *out) == EXIT_USAGE
    _png(tmp_path / "pics" / "tiny.png", 40, 40)
    assert _cli("--data", tmp_path / "pics", "--crop", "64", *out) == EXIT_USAGE
    (tmp_path / "pics" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png"):
        load_sources([tmp_path / "pics"], 64)
    assert _cli("--resume", tmp_path / "nonexistent", "--data", tmp_path / "pics", *out) == EXIT_USAGE
    # Options are checked before any data is read (an AssertionError here would exit 70).
    import vcodec.train.loop as loop

    def no_data(*a, **k):
        raise AssertionError("data loaded before the options were checked")

    monkeypatch.setattr(loop, "load_sources", no_data)
    assert _cli("--data", tmp_path / "pics", "--metric", "psnr", *out) == EXIT_USAGE
    assert _cli("--data", tmp_path / "pics", "--crop", "100", *out) == EXIT_USAGE
    assert _cli("--data", tmp_path / "pics", "--latent-channels", "1300", *out) == EXIT_USAGE
    assert not (tmp_path / "ck").exists()


def test_data_loads_without_av_or_constriction(tmp_path):
    write_dir = tmp_path / "pics"
    _png(write_dir / "a.png", 64, 64, 7)
    code = (
        "import sys; sys.modules['av'] = None; sys.modules['constriction'] = None\n"
        "import vcodec.errors\n"
        "from vcodec.train.data import load_sources\n"
        f"print(len(load_sources([{str(write_dir)!r}], 64)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr


# ------------------------------------------------------------------------------------------ objectives and AMP
def _logged_losses(out: Path) -> list[float]:
    rows = (out.parent / "exp" / out.name / "log.jsonl").read_text().splitlines()
    return [json.loads(r)["loss"] for r in rows]


def test_ms_ssim_objective_trains(pictures, tmp_path):
    train_intra(_opts(pictures, tmp_path / "init", steps=0, metric="ms-ssim"), say=lambda s: None)
    train_intra(_opts(pictures, tmp_path / "ms", steps=60, metric="ms-ssim"), say=lambda s: None)
    losses = _logged_losses(tmp_path / "ms")
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses)
    before = fixed_loss(tmp_path / "init", pictures, "ms-ssim")
    after = fixed_loss(tmp_path / "ms", pictures, "ms-ssim")
    assert math.isfinite(after) and after < 0.8 * before, (before, after)


def test_bf16_autocast_trains_on_cpu(pictures, tmp_path):
    result = train_intra(_opts(pictures, tmp_path / "amp", steps=10, amp=True), say=lambda s: None)
    losses = _logged_losses(tmp_path / "amp")
    assert result["step"] == 10 and len(losses) == 2
    assert all(math.isfinite(v) for v in losses) and math.isfinite(result["bpp"])


def test_header_size_predicts_the_loaded_size(tmp_path):
    """The memory budget is planned from headers alone: they must give the size loading makes, odd sizes included."""
    from vcodec.train.data import _picture_size, load_image

    for w, h, suffix in [(3001, 2003, ".jpg"), (2049, 1025, ".jpg"), (1500, 1101, ".png"), (700, 301, ".png")]:
        path = tmp_path / f"p{w}x{h}{suffix}"
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)
        loaded = load_image(path, 1024)
        assert _picture_size(path, suffix == ".jpg", 1024) == (loaded.shape[2], loaded.shape[1]), path.name
