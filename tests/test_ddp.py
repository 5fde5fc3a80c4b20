"""Distributed training: ``torchrun --nproc_per_node 2 -m napari_brainseg train`` on the CPU (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from napari_brainseg.model import load_model
from napari_brainseg.synthetic import write_synthetic_case
from napari_brainseg.training.train import LOG_FILE, MODEL_FILE

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_ARCH = {"channels": [4, 8], "strides": [2], "num_res_units": 1}


def test_two_processes_train_together_and_rank_0_alone_validates_and_writes(tmp_path):
    for seed in range(3):
        write_synthetic_case(tmp_path / "data" / f"Case_{seed}", f"Case_{seed}", shape=(40, 48, 32), seed=seed)
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "napari_brainseg", "train", "--data", str(tmp_path / "data"), "--out", str(run), "--device", "cpu",
        "--epochs", "1", "--steps-per-epoch", "2", "--max-steps", "2", "--patch-size", "32", "32", "32",
        "--arch-kwargs", json.dumps(TINY_ARCH),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, check=False, cwd=REPO_ROOT, env=env, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    output = done.stdout + done.stderr
    assert "Device: cpu x 2 processes" in output
    assert output.count("Cases: 2 for training, 1 for validation") == 1, "only rank 0 logs"
    assert output.count("Checkpoint:") == 1
    log = [json.loads(line) for line in (run / LOG_FILE).read_text().splitlines()]
    assert [(e["epoch"], e["step"]) for e in log] == [(1, 2)], "one entry: only rank 0 writes"
    assert "Dice_WT" in log[0]["val"]
    _, info = load_model(run / MODEL_FILE)
    assert info.training["world_size"] == 2 and info.training["steps_done"] == 2
    assert sorted(info.train_cases + info.val_cases) == ["Case_0", "Case_1", "Case_2"]
