"""``benchmarks/postprocess.py``: the post-processing options it scores, and its cache of probabilities."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def run_postprocess(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "postprocess.py"), "--threads", "1", *args],
                          capture_output=True, text=True, cwd=ROOT)


def one_case(make_case, tmp_path: Path) -> tuple[Path, Path]:
    """A synthetic labelled case in a data folder, and a split file whose only validation case it is."""
    case = make_case(case_id="Synthetic_001", folder="data/Synthetic_001")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [], "val": ["Synthetic_001"]}))
    return case.folder.parent, split


def test_growths_and_thresholds_asked_for_are_the_options_scored(make_case, tiny_checkpoint, tmp_path):
    data, split = one_case(make_case, tmp_path)
    out = tmp_path / "table.json"
    result = run_postprocess("--model", str(tiny_checkpoint), "--data", str(data), "--split", str(split),
                             "--json", str(out), "--thresholds", "0.4", "0.5", "0.5", "--wt-growth", "0.1", "5")
    assert result.returncode == 0, result.stderr
    table = json.loads(out.read_text())["table"]
    assert {tuple(row["thresholds"]) for row in table} == {(0.4, 0.5, 0.5)}
    growths = sorted(str(row["wt_growth"]) for row in table)
    assert growths == sorted(["None", "[0.1, 5]"] * 6)  # each with 3 clean-ups and 2 small-ET rules


def test_the_cache_keeps_apart_two_checkpoints_of_the_same_file_name(make_case, tiny_checkpoint, tmp_path):
    from napari_brainseg.model import load_model, save_checkpoint

    data, split = one_case(make_case, tmp_path)
    network, info = load_model(tiny_checkpoint)
    with torch.no_grad():
        for weight in network.parameters():
            weight.mul_(-1.0)
    first = save_checkpoint(tmp_path / "run1" / "avg56.pt", load_model(tiny_checkpoint)[0], info)
    second = save_checkpoint(tmp_path / "run2" / "avg56.pt", network, info)
    cache = tmp_path / "cache"
    for model in (first, second):
        result = run_postprocess("--model", str(model), "--data", str(data), "--split", str(split), "--cache",
                                 str(cache), "--thresholds", "0.5", "0.5", "0.5")
        assert result.returncode == 0, result.stderr
    assert len(list(cache.iterdir())) == 2
