"""Weights are data, not code: no pickle anywhere in the runtime, and a stream is tied to the exact weights."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vcodec import weights

RUNTIME = Path(weights.__file__).resolve().parent


def test_runtime_never_unpickles():
    forbidden = re.compile(
        r"torch\.load\(|^\s*(import|from)\s+(pickle|cPickle|dill|joblib|marshal|shelve)\b|(?<![\w.])(eval|exec)\("
        r"|(numpy|np)\.load\(|allow_pickle"
    )
    offenders = []
    for path in RUNTIME.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if forbidden.search(line.split("#")[0]):
                offenders.append(f"{path.relative_to(RUNTIME)}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_a_pickle_renamed_safetensors_is_refused(tmp_path):
    import pickle

    fake = tmp_path / "evil.safetensors"
    fake.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(weights.WeightsError):
        weights.load(fake)


def test_weights_hash_is_of_the_file(bundle):
    import hashlib

    assert bundle.sha256 == hashlib.sha256(bundle.path.read_bytes()).digest()
