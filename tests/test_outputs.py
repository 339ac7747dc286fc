"""Where decode may write, and what a stream's header may make it do: -y replaces only what vcodec wrote, a failed
publish leaves nothing behind, a header claiming a huge picture or naming a file is refused before any work."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import pytest

from vcodec import api
from vcodec import container as C
from vcodec.cli import main
from vcodec.errors import EXIT_DAMAGED, EXIT_IO, EXIT_MODEL, EXIT_USAGE, DamagedStream, OutputError

from conftest import read_video, sample_frames, write_pngs


def run(*args) -> int:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and "internal error" not in lines[0]
    return lines[0]


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for folders): what a refused command must leave unchanged."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


# ----------------------------------------------------------------------------------------- decode to PNG frames
def test_y_refuses_a_regular_file_where_a_folder_is_asked_for(tiny_stream, tmp_path, capsys):
    target = tmp_path / "plainfile"
    target.write_bytes(b"keep me")
    before = tree(tmp_path)
    assert run("decode", tiny_stream, target, "-y") == EXIT_USAGE
    line = one_error_line(capsys)
    assert str(target) in line and "not a folder" in line
    assert tree(tmp_path) == before  # no temp folder of PNGs left beside it


@pytest.mark.parametrize("content", ["unrelated file", "file in a subfolder", "empty subfolder", "other png"])
def test_y_refuses_a_folder_that_is_not_png_frames(tiny_stream, tmp_path, capsys, content):
    target = write_pngs(tmp_path / "frames", sample_frames(1, 16, 16), digits=5)  # looks like our output...
    if content == "unrelated file":
        (target / "notes.txt").write_text("precious")
    elif content == "file in a subfolder":
        (target / "sub").mkdir()
        (target / "sub" / "thesis.tex").write_text("precious")
    elif content == "empty subfolder":
        (target / "sub").mkdir()
    else:
        (target / "holiday.png").write_bytes((target / "f00001.png").read_bytes())
    before = tree(tmp_path)
    assert run("decode", tiny_stream, target, "-y") == EXIT_USAGE
    line = one_error_line(capsys)
    assert str(target) in line and "PNG frames" in line
    assert tree(tmp_path) == before


def test_y_replaces_a_folder_of_png_frames(tiny_stream, tmp_path):
    old = write_pngs(tmp_path / "frames", sample_frames(5, 16, 16), digits=5)  # five stale frames
    assert run("decode", tiny_stream, old, "-y") == 0
    assert sorted(os.listdir(old)) == ["f00001.png", "f00002.png"]
    assert read_video(old)[0][0].shape == (48, 64, 3)
    assert sorted(os.listdir(tmp_path)) == ["frames"]
    (tmp_path / "empty").mkdir()  # an empty folder is fine too
    assert run("decode", tiny_stream, tmp_path / "empty", "-y") == 0
    assert sorted(os.listdir(tmp_path / "empty")) == ["f00001.png", "f00002.png"]


def test_decode_into_dot_and_dotdot(tiny_stream, tmp_path, monkeypatch, capsys):
    work = tmp_path / "d"
    work.mkdir()
    monkeypatch.chdir(work)
    assert run("decode", tiny_stream, ".", "-y") == 0
    assert sorted(os.listdir(tmp_path)) == ["d"]
    assert sorted(os.listdir(tmp_path / "d")) == ["f00001.png", "f00002.png"]
    # '..' names tmp_path, which holds the folder d: not a folder of PNG frames, so it is refused.
    sub = tmp_path / "d" / "sub"
    (tmp_path / "d" / "f00001.png").unlink()
    (tmp_path / "d" / "f00002.png").unlink()
    sub.mkdir()
    monkeypatch.chdir(sub)
    before = tree(tmp_path)
    assert run("decode", tiny_stream, "..", "-y") == EXIT_USAGE
    assert "PNG frames" in one_error_line(capsys)
    assert tree(tmp_path) == before


def test_failed_publish_leaves_nothing(tiny_stream, tmp_path, capsys):
    """Something appears at the target while decoding: the publish fails, and no temp file or folder remains."""
    for name, intruder in (("frames", "file"), ("out.mkv", "folder")):
        target = tmp_path / name

        def on_frame(n, target=target, intruder=intruder):
            if n == 1:
                target.write_text("x") if intruder == "file" else target.mkdir()

        with pytest.raises(OutputError):
            api.decode(tiny_stream, target, on_frame=on_frame)
        assert sorted(os.listdir(tmp_path)) == [name], os.listdir(tmp_path)
        target.unlink() if intruder == "file" else target.rmdir()


# ------------------------------------------------------------------------------------------ hostile stream headers
def _header_only_stream(path: Path, bundle, width: int, height: int, model: str | None = None) -> Path:
    header = C.Header(
        model=model or bundle.name, weights_hash=bundle.sha256, width=width, height=height,
        padded_width=C.padded(width), padded_height=C.padded(height), fps=Fraction(25),
        entropy_form=C.ENTROPY_INTEGER, frame_count=1,
    )
    path.write_bytes(header.pack())
    return path


@pytest.mark.parametrize("size", [(7681, 4320), (16384, 16384), (16384, 2026)])
def test_decoder_refuses_pictures_larger_than_the_encoder_makes(bundle, tmp_path, capsys, size):
    from vcodec.media import MAX_PIXELS

    stream = _header_only_stream(tmp_path / "big.hfc", bundle, *size)
    started = []
    with pytest.raises(DamagedStream) as refused:
        api.decode(stream, tmp_path / "out.mkv", device="cpu", on_start=started.append)
    assert refused.value.frame is None  # the header is the problem
    assert f"{size[0]}x{size[1]}" in str(refused.value) and f"{MAX_PIXELS:,}" in str(refused.value)
    assert started == []  # refused before the model is loaded or anything is allocated
    assert run("decode", stream, tmp_path / "out.mkv") == EXIT_DAMAGED
    assert "nothing written" in one_error_line(capsys)
    assert sorted(os.listdir(tmp_path)) == ["big.hfc"]


def test_stream_cannot_name_a_weights_file(bundle, tmp_path, monkeypatch, capsys):
    """A model name in a stream is looked up among the shipped models, never opened as a path."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(bundle.path), framework="pt") as f:
        meta = dict(f.metadata())
    meta["vcodec.name"] = "evil.safetensors"  # encode records this name in the stream's header
    planted = tmp_path / "evil.safetensors"
    save_file(load_file(str(bundle.path)), str(planted), metadata=meta)
    frames = write_pngs(tmp_path / "src", sample_frames(1, 64, 48))
    stream = tmp_path / "s.hfc"
    api.encode(frames, stream, quality=1, model=planted)  # the user's own --model may be a path
    monkeypatch.chdir(tmp_path)
    assert run("decode", stream, "out.mkv") == EXIT_MODEL
    assert "'evil.safetensors' not found" in one_error_line(capsys)
    assert not (tmp_path / "out.mkv").exists()
    assert run("decode", stream, "out.mkv", "--model", planted) == 0  # ... and with it the stream decodes


@pytest.mark.parametrize("name", ["/etc/hostname", "../models/intra-n64m128", "sub/intra-n64m128", ".hidden",
                                  "..", "a\\b", "intra\nn64m128", "C:model"])
def test_bad_model_names_in_streams_are_refused(bundle, tmp_path, capsys, name):
    stream = _header_only_stream(tmp_path / "s.hfc", bundle, 64, 48, model=name)
    assert run("decode", stream, tmp_path / "out.mkv") == EXIT_MODEL
    assert "not a model name" in one_error_line(capsys)
    assert sorted(os.listdir(tmp_path)) == ["s.hfc"]
