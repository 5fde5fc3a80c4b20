"""Training: ``napari-brainseg train`` writes a self-describing checkpoint, splits by case, resumes exactly;
``evaluate`` scores per case with the BraTS rules for empty regions."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_brainseg.__main__ import main
from napari_brainseg.inference import segment
from napari_brainseg.io import MODALITIES, find_case, load_case
from napari_brainseg.jobs import Progress
from napari_brainseg.model import load_model, read_checkpoint
from napari_brainseg.synthetic import write_synthetic_case
from napari_brainseg.preprocess import OUTSIDE_TUMOUR, ROBUST
from napari_brainseg.training import train as train_module
from napari_brainseg.training.data import load_training_case
from napari_brainseg.training.evaluate import HD95_EMPTY, evaluate_cases, mean_scores, region_scores
from napari_brainseg.training.losses import DICE_BCE, region_loss
from napari_brainseg.training.train import LOG_FILE, MODEL_FILE, SPLIT_FILE, STATE_FILE, TrainConfig, Trainer

REPO_ROOT = Path(__file__).resolve().parents[1]
SHAPE = (40, 48, 32)
CASE_IDS = [f"Case_{i:03d}" for i in range(4)]
TINY_ARCH = {"channels": [4, 8], "strides": [2], "num_res_units": 1}
TINY_ARGS = ["--patch-size", "32", "32", "32", "--arch-kwargs", json.dumps(TINY_ARCH), "--device", "cpu"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Four small synthetic labelled cases, BraTS 2018 names."""
    root = tmp_path_factory.mktemp("data")
    for seed, case_id in enumerate(CASE_IDS):
        write_synthetic_case(root / case_id, case_id, shape=SHAPE, seed=seed)
    return root


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory) -> Path:
    """A two-step run of the real CLI: two epochs of one step each."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["train", "--data", str(data_dir), "--out", str(run), "--epochs", "2", "--steps-per-epoch", "1",
                 "--model-id", "tiny-test", "--version", "2.3.4", *TINY_ARGS])
    assert code == 0
    return run


def tiny_config(data_dir: Path, out: Path, **changes) -> TrainConfig:
    settings = {"data": [str(data_dir)], "out": str(out), "epochs": 2, "steps_per_epoch": 2, "device": "cpu",
                "seed": 7, "patch_size": [32, 32, 32], "arch_kwargs": TINY_ARCH, "warmup_steps": 1}
    return TrainConfig(**{**settings, **changes})


def test_a_trained_checkpoint_reloads_and_segments_into_brats_labels(trained_run, data_dir):
    model, _ = load_model(trained_run / MODEL_FILE)
    case = load_case(data_dir / CASE_IDS[0])
    labels = segment(case.image, model, device="cpu").labels
    assert labels.shape == case.image.shape[1:]
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 4}


def test_the_checkpoint_describes_itself(trained_run):
    info = read_checkpoint(trained_run / MODEL_FILE)["info"]
    assert info["model_id"] == "tiny-test" and info["version"] == "2.3.4"
    assert info["arch"] == "monai.UNet" and info["arch_kwargs"]["channels"] == [4, 8]
    assert info["channels"] == list(MODALITIES)
    assert "z-score" in info["normalisation"]
    assert info["labels"] == {"NCR/NET": 1, "oedema": 2, "enhancing": 4}
    assert info["patch_size"] == [32, 32, 32]
    assert sorted(info["train_cases"] + info["val_cases"]) == CASE_IDS
    assert {"Dice_WT", "Dice_TC", "Dice_ET", "HD95_WT", "HD95_TC", "HD95_ET"} <= info["metrics"].keys()
    assert info["metrics"]["step"] == 2
    assert info["training"]["steps_done"] == 2 and info["training"]["world_size"] == 1
    assert info["parent"] is None and info["created"]


def test_a_2_5d_run_trains_on_slabs_and_its_checkpoint_segments_volumes(data_dir, tmp_path):
    run = tmp_path / "slices"
    assert main(["train", "--arch", "2.5d", "--data", str(data_dir), "--out", str(run), "--epochs", "1",
                 "--steps-per-epoch", "2", "--patch-size", "4", "32", "32", "--device", "cpu",
                 "--arch-kwargs", json.dumps({"channels": [4, 8], "strides": [2], "context": 2})]) == 0
    model, info = load_model(run / MODEL_FILE)
    assert info.arch == "monai.UNet-2.5d" and info.patch_size == [4, 32, 32]
    assert info.arch_kwargs["context"] == 2 and info.arch_kwargs["in_channels"] == 4 * 5
    case = load_case(data_dir / CASE_IDS[0])
    labels = segment(case.image, model, device="cpu").labels
    assert labels.shape == case.image.shape[1:]
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 4}


def test_a_robust_run_in_bf16_records_its_normalisation_and_validates_with_it(data_dir, tmp_path):
    run = tmp_path / "robust"
    assert main(["train", "--data", str(data_dir), "--out", str(run), "--epochs", "1", "--steps-per-epoch", "2",
                 "--normalisation", "robust", "--precision", "bf16", *TINY_ARGS]) == 0
    model, info = load_model(run / MODEL_FILE)
    assert info.normalisation == ROBUST
    assert info.training["config"]["precision"] == "bf16"
    val = [find_case(data_dir / case_id) for case_id in info.val_cases]
    rows = evaluate_cases(model, val, threshold=info.thresholds, normalisation=ROBUST)
    z_scored = evaluate_cases(model, val, threshold=info.thresholds)
    assert mean_scores(rows) != mean_scores(z_scored), "the normalisation matters here"
    assert info.metrics["HD95_WT"] == pytest.approx(mean_scores(rows)["HD95_WT"])
    assert info.metrics["Dice_WT"] == pytest.approx(mean_scores(rows)["Dice_WT"])


def test_a_run_normalised_outside_the_tumour_records_it_and_validates_as_segment_does(data_dir, tmp_path, monkeypatch):
    seen = []

    def spy(files, normalisation: str, scale: int) -> dict:
        seen.append(normalisation)
        return load_training_case(files, normalisation, scale)

    monkeypatch.setattr(train_module, "load_training_case", spy)
    run = tmp_path / "outside"
    assert main(["train", "--data", str(data_dir), "--out", str(run), "--epochs", "1", "--steps-per-epoch", "2",
                 "--normalisation", "z-score-outside-tumour", *TINY_ARGS]) == 0
    model, info = load_model(run / MODEL_FILE)
    assert info.normalisation == OUTSIDE_TUMOUR and set(seen) == {OUTSIDE_TUMOUR}
    val = [find_case(data_dir / case_id) for case_id in info.val_cases]
    rows = evaluate_cases(model, val, **info.segment_options())
    assert info.metrics["Dice_WT"] == pytest.approx(mean_scores(rows)["Dice_WT"])


def test_a_run_resumed_with_another_normalisation_is_refused(data_dir, tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_config(data_dir, run, epochs=1, normalisation="robust")).fit()
    with pytest.raises(ValueError, match="normalised by robust, not by z-score; resume it with --normalisation robust"):
        Trainer(tiny_config(data_dir, run, epochs=2))
    assert Trainer(tiny_config(data_dir, run, epochs=2, normalisation="robust")).step == 2


@pytest.mark.parametrize(("precision", "bf16"), [("bf16", True), ("auto", False), ("fp32", False)])
def test_bf16_precision_autocasts_the_network_and_auto_does_not_on_the_cpu(data_dir, tmp_path, monkeypatch,
                                                                          precision, bf16):
    autocast, seen = train_module.torch.autocast, []

    def spy(device_type, dtype=None, enabled=True, **kwargs):
        seen.append((device_type, dtype, enabled))
        return autocast(device_type, dtype=dtype, enabled=enabled, **kwargs)

    monkeypatch.setattr(train_module.torch, "autocast", spy)
    Trainer(tiny_config(data_dir, tmp_path / "run", epochs=1, precision=precision)).fit()
    assert seen and all(call == ("cpu", torch.bfloat16, bf16) for call in seen)


def test_a_run_resumed_with_another_loss_is_refused_and_an_unrecorded_loss_is_the_old_one(data_dir, tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_config(data_dir, run, epochs=1, loss=DICE_BCE)).fit()
    with pytest.raises(ValueError, match="trained with the loss dice-bce, not dice-softmax-ce; resume it with --loss "
                                         "dice-bce"):
        Trainer(tiny_config(data_dir, run, epochs=2))
    state = torch.load(run / STATE_FILE, weights_only=False)
    del state["loss"]  # a run folder written before the loss was recorded
    torch.save(state, run / STATE_FILE)
    with pytest.raises(ValueError, match="trained with the loss dice-softmax-ce"):
        Trainer(tiny_config(data_dir, run, epochs=2, loss=DICE_BCE))
    assert Trainer(tiny_config(data_dir, run, epochs=2)).step == 2


def test_the_run_trains_with_its_loss_and_records_it(data_dir, tmp_path, monkeypatch):
    calls = []

    def spy(name):
        calls.append(name)
        return region_loss(name)

    monkeypatch.setattr(train_module, "region_loss", spy)
    Trainer(tiny_config(data_dir, tmp_path / "run", epochs=1, loss=DICE_BCE)).fit()
    assert calls == [DICE_BCE]
    assert read_checkpoint(tmp_path / "run" / MODEL_FILE)["info"]["training"]["config"]["loss"] == DICE_BCE


@pytest.mark.parametrize(("change", "message"), [({"normalisation": "min-max"}, "Unknown normalisation 'min-max'"),
                                                 ({"precision": "fp8"}, "Unknown precision 'fp8'"),
                                                 ({"loss": "focal"}, "Unknown loss 'focal'")])
def test_an_unknown_normalisation_precision_or_loss_is_refused_before_training(data_dir, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        Trainer(tiny_config(data_dir, tmp_path / "run", **change))
    assert not (tmp_path / "run").exists()


def test_the_split_is_by_case_and_written_to_split_json(trained_run):
    split = json.loads((trained_run / SPLIT_FILE).read_text())
    assert not set(split["train"]) & set(split["val"])
    assert sorted(split["train"] + split["val"]) == CASE_IDS
    assert split["val"], "some cases are held out for validation"
    info = read_checkpoint(trained_run / MODEL_FILE)["info"]
    assert (info["train_cases"], info["val_cases"]) == (split["train"], split["val"])


def test_every_epoch_is_logged_once(trained_run):
    entries = [json.loads(line) for line in (trained_run / LOG_FILE).read_text().splitlines()]
    assert [(e["epoch"], e["step"]) for e in entries] == [(1, 1), (2, 2)]
    assert all(np.isfinite(e["loss"]) and "Dice_WT" in e["val"] for e in entries)


def test_a_val_split_file_is_honoured(data_dir, tmp_path):
    split_file = tmp_path / "my_split.json"
    split_file.write_text(json.dumps({"train": CASE_IDS[:2], "val": [CASE_IDS[3]]}))
    run = tmp_path / "run"
    assert main(["train", "--data", str(data_dir), "--out", str(run), "--epochs", "1", "--steps-per-epoch", "1",
                 "--val-split", str(split_file), *TINY_ARGS]) == 0
    split = json.loads((run / SPLIT_FILE).read_text())
    assert split["val"] == [CASE_IDS[3]]
    assert split["train"] == CASE_IDS[:3], "a case the split file does not name trains"


def test_validation_folders_are_held_out_of_training(data_dir, tmp_path):
    write_synthetic_case(tmp_path / "val" / "Other_001", "Other_001", shape=SHAPE, seed=9)
    trainer = Trainer(tiny_config(data_dir, tmp_path / "run", val_data=[str(tmp_path / "val")]), log=lambda _: None)
    assert trainer.split == {"train": CASE_IDS, "val": ["Other_001"]}


class Interrupted(Exception):
    pass


def stop_at(step: int):
    def progress(p: Progress) -> None:
        if p.stage == "train" and p.done == step:
            raise Interrupted

    return progress


def test_an_interrupted_run_resumes_from_its_last_epoch_and_ends_with_the_same_weights(data_dir, tmp_path):
    quiet = lambda _: None
    uninterrupted = Trainer(tiny_config(data_dir, tmp_path / "a"), log=quiet).fit()

    with pytest.raises(Interrupted):  # a crash during step 3, after epoch 1 (steps 1-2) was saved
        Trainer(tiny_config(data_dir, tmp_path / "b"), log=quiet).fit(progress=stop_at(3))
    state = torch.load(tmp_path / "b" / STATE_FILE, weights_only=False)
    assert (state["epoch"], state["step"]) == (1, 2)

    messages: list[str] = []
    resumed = Trainer(tiny_config(data_dir, tmp_path / "b"), log=messages.append)
    assert (resumed.epoch, resumed.step) == (1, 2)
    assert any("Resumed" in m for m in messages)
    path = resumed.fit()

    a, b = load_model(uninterrupted)[0].state_dict(), load_model(path)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "b" / LOG_FILE).read_text().splitlines()]
    assert [e["step"] for e in log] == [2, 4], "no epoch is trained twice"


def test_resuming_with_more_epochs_extends_the_run_and_stretches_its_schedule(data_dir, tmp_path):
    quiet = lambda _: None
    Trainer(tiny_config(data_dir, tmp_path / "run", epochs=1), log=quiet).fit()

    messages: list[str] = []
    extended = Trainer(tiny_config(data_dir, tmp_path / "run", epochs=3), log=messages.append)
    assert extended.scheduler.t_total == 6
    assert any("stretched from 2 to 6 steps" in m for m in messages)
    extended.fit()
    log = [json.loads(line) for line in (tmp_path / "run" / LOG_FILE).read_text().splitlines()]
    assert [e["step"] for e in log] == [2, 4, 6]
    assert log[1]["lr"] > log[2]["lr"], "after the stretch the learning rate is live again, then decays to its end"


def test_the_same_seed_gives_the_same_model_and_another_seed_does_not(data_dir, tmp_path):
    quiet = lambda _: None
    runs = [Trainer(tiny_config(data_dir, tmp_path / name, epochs=1, seed=seed), log=quiet).fit()
            for name, seed in (("a", 1), ("b", 1), ("c", 2))]
    a, b, c = (load_model(p)[0].state_dict() for p in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_evaluate_prints_per_case_and_mean_scores_and_writes_csv_and_json(trained_run, data_dir, tmp_path, capsys):
    csv_path, json_path = tmp_path / "scores.csv", tmp_path / "out" / "scores.json"
    code = main(["evaluate", "--model", str(trained_run / MODEL_FILE), "--data", str(data_dir), "--device", "cpu",
                 "--include-training-cases", "--report", str(csv_path), str(json_path)])
    assert code == 0
    captured = capsys.readouterr()
    header = captured.out.splitlines()[1].split()
    assert header == ["case", "Dice_WT", "HD95_WT", "Dice_TC", "HD95_TC", "Dice_ET", "HD95_ET"]
    for case_id in [*CASE_IDS, "mean"]:
        assert any(line.startswith(case_id) for line in captured.out.splitlines())
    assert "were used to train" in captured.err, "scores on training cases are flagged as not a fair test"

    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case_id"] for r in rows] == [*CASE_IDS, "mean"]
    report = json.loads(json_path.read_text())
    assert [r["case_id"] for r in report["cases"]] == CASE_IDS
    assert report["mean"]["Dice_WT"] == pytest.approx(np.mean([r["Dice_WT"] for r in report["cases"]]))


def test_evaluate_can_score_only_the_validation_cases_of_a_split(trained_run, data_dir, capsys):
    code = main(["evaluate", "--model", str(trained_run / MODEL_FILE), "--data", str(data_dir), "--device", "cpu",
                 "--split", str(trained_run / SPLIT_FILE)])
    assert code == 0
    captured = capsys.readouterr()
    val = json.loads((trained_run / SPLIT_FILE).read_text())["val"]
    assert f"on {len(val)} case(s)" in captured.out
    assert "were used to train" not in captured.err


def labels_with(*boxes: tuple[int, tuple[slice, ...]]) -> np.ndarray:
    seg = np.zeros((20, 20, 20), dtype=np.uint8)
    for label, box in boxes:
        seg[box] = label
    return seg


CUBE = (slice(5, 10), slice(5, 10), slice(5, 10))
CORE = (slice(6, 8), slice(6, 8), slice(6, 8))


def test_empty_truth_and_empty_prediction_score_dice_1_and_hd95_0():
    scores = region_scores(labels_with(), labels_with(), (1, 1, 1))
    assert all(scores[f"Dice_{r}"] == 1.0 and scores[f"HD95_{r}"] == 0.0 for r in ("WT", "TC", "ET"))


def test_a_region_empty_on_one_side_only_scores_dice_0():
    truth = labels_with((2, CUBE))  # oedema only: TC and ET are empty
    pred = labels_with((2, CUBE), (4, CORE))  # predicts enhancing tumour that is not there
    scores = region_scores(pred, truth, (1, 1, 1))
    assert scores["Dice_ET"] == 0.0 and scores["HD95_ET"] == HD95_EMPTY
    assert scores["Dice_TC"] == 0.0
    missed = region_scores(labels_with(), truth, (1, 1, 1))
    assert missed["Dice_WT"] == 0.0 and missed["HD95_WT"] == HD95_EMPTY


def test_a_perfect_prediction_scores_dice_1_and_hd95_0():
    seg = labels_with((2, CUBE), (1, CORE))
    scores = region_scores(seg, seg, (1, 1, 1))
    assert scores["Dice_WT"] == pytest.approx(1) and scores["HD95_WT"] == 0
    assert scores["Dice_ET"] == 1.0 and scores["HD95_ET"] == 0.0, "ET empty on both sides"


def test_hd95_is_measured_in_millimetres_with_the_voxel_spacing():
    truth = labels_with((2, CUBE))
    shifted = labels_with((2, (slice(7, 12), slice(5, 10), slice(5, 10))))  # two voxels along axis 0
    assert region_scores(shifted, truth, (1, 1, 1))["HD95_WT"] == pytest.approx(2)
    assert region_scores(shifted, truth, (3, 1, 1))["HD95_WT"] == pytest.approx(6)
    assert region_scores(shifted, truth, (1, 1, 1))["Dice_WT"] == pytest.approx(3 / 5)



# The child trains for real and is killed (SIGKILL) while it writes state.pt at the end of epoch 2.
KILLED_DURING_STATE_WRITE = """
import json, os, signal, sys, torch
from napari_brainseg.training.train import TrainConfig, Trainer
real_save, saves = torch.save, []
def save_then_die(obj, path, *args, **kwargs):
    saves.append(path)
    if len(saves) == 4:  # epoch 1: model.pt, state.pt; epoch 2: model.pt, then state.pt
        open(path, "wb").write(b"half a state")
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(obj, path, *args, **kwargs)
torch.save = save_then_die
Trainer(TrainConfig(**json.loads(sys.argv[1])), log=lambda _: None).fit()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_run_killed_while_writing_a_checkpoint_resumes_loads_and_leaves_no_temporary_file(data_dir, tmp_path):
    quiet = lambda _: None
    uninterrupted = Trainer(tiny_config(data_dir, tmp_path / "a"), log=quiet).fit()
    run = tmp_path / "b"
    config = json.dumps(asdict(tiny_config(data_dir, run)))
    child = subprocess.run([sys.executable, "-c", KILLED_DURING_STATE_WRITE, config], cwd=REPO_ROOT,
                           capture_output=True, text=True, encoding="utf-8", timeout=600)
    assert child.returncode == -9, child.stderr
    assert [p.name.split("~")[0] for p in run.glob(".*")] == [".state"], "the kill left its temporary file"
    load_model(run / MODEL_FILE)  # the checkpoint under its final name is always whole

    resumed = Trainer(tiny_config(data_dir, run), log=quiet)
    assert (resumed.epoch, resumed.step) == (1, 2)
    path = resumed.fit()
    assert not list(run.glob(".*")), "the resumed run removed the dead writer's temporary file"
    a, b = load_model(uninterrupted)[0].state_dict(), load_model(path)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
