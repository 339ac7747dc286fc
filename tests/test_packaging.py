"""A non-editable install (a built wheel) carries the shipped weights and finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from conftest import REPO


def test_wheel_ships_the_default_model(tmp_path):
    from vcodec.weights import DEFAULT_MODEL

    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(tmp_path.glob("vcodec-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert f"vcodec/_models/{DEFAULT_MODEL}.safetensors" in names
        assert "vcodec/_models/README.md" in names
        z.extractall(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if k != "VCODEC_MODELS"}
    env["PYTHONPATH"] = str(tmp_path / "site")
    code = "from vcodec import weights; b = weights.load(); print(b.path)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith(str(tmp_path / "site" / "vcodec" / "_models"))
