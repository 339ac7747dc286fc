"""`vcodec bench --json-dir`: one file per codec (its average curve) and per codec and sequence, in the shape of
CompressAI's published result files, each of which its plotter (`python -m compressai.utils.plot -f FILE`) reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vcodec.cli import main
from vcodec.errors import EXIT_USAGE
from vcodec.rd_results import AVERAGE, Point, Results, compressai_file_names

from conftest import sample_frames, write_pngs


def run_cli(*args) -> int:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code


def plotter_reads(path: Path, metric: str = "psnr-rgb") -> dict:
    """What CompressAI's plotter takes from a results file, with the checks it makes on the way: one JSON object
    whose `results` (the object itself when absent) holds `bpp` and the metric; the curve's label is `name`. Beyond
    that, a curve needs x and y of equal length, all numbers, which matplotlib would otherwise refuse."""
    data = json.loads(path.read_text())
    assert isinstance(data, dict), f"{path.name}: the top level is a {type(data).__name__}, not an object"
    results = data["results"] if "results" in data else data
    assert isinstance(results, dict) and "bpp" in results and metric in results, f"{path.name}: no bpp or {metric}"
    assert isinstance(data.get("name"), str), f"{path.name}: no name"
    lengths = {k: len(v) for k, v in results.items()}
    assert all(isinstance(v, list) for v in results.values()) and len(set(lengths.values())) == 1, lengths
    assert all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in results["bpp"] + results[metric])
    return {"name": data["name"], "xs": results["bpp"], "ys": results[metric], "description": data.get("description")}


def _point(codec: str, sequence: str, setting: str, order: float, bpp: float, psnr: float) -> Point:
    return Point(codec, sequence, setting, order, 4, bpp, psnr, psnr + 1, 0.9 + psnr / 1000, 0.5, 0.25)


def test_files_for_every_codec_and_sequence_in_the_plotters_shape(tmp_path):
    # "vcodec" on a sequence named "intra" and the codec "vcodec-intra" would both be vcodec-intra.json
    codecs = {"vcodec": "ours", "vcodec-intra": "ours, all-intra", "x264": "x264 medium"}
    results = Results(codecs)
    for sequence, shift in (("intra", 0.0), ("my clip (2)", 1.0)):
        results.start_sequence(sequence, 64, 48)
        for codec, gain in (("vcodec", 2.0), ("vcodec-intra", 1.0), ("x264", 0.0)):
            for k, setting in enumerate(("a", "b", "c")):
                results.add(_point(codec, sequence, setting, k, 0.1 * 2**k, 30 + 3 * k + gain + shift))
        results.finish_sequence(sequence)
    results.write_json_dir(tmp_path / "rd")
    names = compressai_file_names(list(codecs), ["intra", "my clip (2)"])
    assert sorted(p.name for p in (tmp_path / "rd").iterdir()) == sorted(names.values())
    assert names[("vcodec-intra", AVERAGE)] == "vcodec-intra.json"
    assert names[("vcodec", "intra")] == "vcodec-intra-2.json"
    assert names[("x264", "my clip (2)")] == "x264-my_clip_2.json"
    combined = {(e["name"], e["sequence"]): e for e in results.to_json()}
    for (codec, sequence), name in names.items():
        curve = plotter_reads(tmp_path / "rd" / name)
        plotter_reads(tmp_path / "rd" / name, "ms-ssim-rgb")
        entry = combined[(codec, sequence)]
        assert curve["xs"] == entry["results"]["bpp"] and curve["ys"] == entry["results"]["psnr-rgb"]
        assert curve["name"] == (codec if sequence == AVERAGE else f"{codec} ({sequence})")
        assert codecs[codec] in curve["description"] and "settings a, b, c" in curve["description"]
    average = plotter_reads(tmp_path / "rd" / "vcodec.json")
    assert average["ys"] == pytest.approx([32.5, 35.5, 38.5])  # the mean of the two sequences, setting by setting


def test_the_plotter_check_refuses_the_combined_list_and_ragged_results(tmp_path):
    """The check above can fail: on the combined --json file (a list, which CompressAI's plotter cannot read) and on
    results lists of different lengths."""
    combined = tmp_path / "combined.json"
    combined.write_text(json.dumps([{"name": "x", "results": {"bpp": [1], "psnr-rgb": [30]}}]))
    with pytest.raises(AssertionError, match="not an object"):
        plotter_reads(combined)
    ragged = tmp_path / "ragged.json"
    ragged.write_text(json.dumps({"name": "x", "results": {"bpp": [1, 2], "psnr-rgb": [30]}}))
    with pytest.raises(AssertionError):
        plotter_reads(ragged)


def test_bench_writes_the_folder_beside_the_combined_file(tmp_path, capsys):
    clip = write_pngs(tmp_path / "clip", sample_frames(2, 64, 48, start=7))
    folder, combined = tmp_path / "rd", tmp_path / "rd.json"
    assert run_cli("bench", clip, "--qualities", "0,5", "--frames", "2", "--gop", "2", "--baselines", "none",
                   "--device", "cpu", "--json", combined, "--json-dir", folder) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["vcodec-clip.json", "vcodec.json"]
    entries = json.loads(combined.read_text())  # the combined file is kept as it was: a list
    assert [(e["name"], e["sequence"]) for e in entries] == [("vcodec", "clip"), ("vcodec", AVERAGE)]
    for name, entry in (("vcodec-clip.json", entries[0]), ("vcodec.json", entries[1])):
        curve = plotter_reads(folder / name)
        assert curve["xs"] == entry["results"]["bpp"] and len(curve["xs"]) == 2 and curve["xs"][0] < curve["xs"][1]
    assert f"wrote {folder}" in capsys.readouterr().out
    # a second run must not silently replace them
    before = (folder / "vcodec.json").read_bytes()
    assert run_cli("bench", clip, "--qualities", "0", "--frames", "1", "--baselines", "none", "--device", "cpu",
                   "--json-dir", folder) == EXIT_USAGE
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "exists (use -y" in err[0]
    assert (folder / "vcodec.json").read_bytes() == before
    (tmp_path / "file").write_text("x")
    assert run_cli("bench", clip, "--baselines", "none", "--json-dir", tmp_path / "file") == EXIT_USAGE
    assert "not a folder" in capsys.readouterr().err
