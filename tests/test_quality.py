"""Quality as a user writes it: numbers, fractions and the seeds' regime names, through the command line."""

from __future__ import annotations

import math

import pytest

from vcodec import api
from vcodec import quality as Q
from vcodec.cli import main
from vcodec.errors import EXIT_USAGE

from conftest import sample_frames, write_pngs


@pytest.mark.parametrize("text, value", [("0", 0.0), ("7", 7.0), ("4.5", 4.5), ("low", 1.0), ("MED", 4.0), (" high ", 6.0)])
def test_numbers_and_regime_names(text, value):
    assert Q.parse(text) == value


@pytest.mark.parametrize("text", ["-1", "7.5", "nan", "inf", "best", ""])
def test_out_of_range_or_unknown_is_refused(text):
    with pytest.raises(ValueError, match="quality"):
        Q.parse(text)


def test_lambda_interpolates_geometrically_between_levels():
    assert math.isclose(Q.lambda_of(4, Q.LAMBDAS), Q.LAMBDAS[4])
    assert math.isclose(Q.lambda_of(4.5, Q.LAMBDAS), math.sqrt(Q.LAMBDAS[4] * Q.LAMBDAS[5]))


def test_regime_name_reaches_the_stream(tmp_path, capsys):
    frames = write_pngs(tmp_path / "frames", sample_frames(1, 64, 64))
    out = tmp_path / "high.hfc"
    with pytest.raises(SystemExit) as done:
        main(["encode", str(frames), str(out), "-q", "high"])
    assert done.value.code == 0
    assert [f["quality"] for f in api.probe(out)["frames"]] == [Q.REGIMES["high"]]


def test_bad_quality_is_one_line_before_any_work(tmp_path, capsys):
    frames = write_pngs(tmp_path / "frames", sample_frames(1, 64, 64))
    out = tmp_path / "x.hfc"
    with pytest.raises(SystemExit) as done:
        main(["encode", str(frames), str(out), "-q", "ultra"])
    assert done.value.code == EXIT_USAGE
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "quality" in lines[0] and "low, med, high" in lines[0]
    assert not out.exists()
