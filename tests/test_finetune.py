"""Fine-tuning: starts from a base model, learns from the corrections without touching them, names its lineage,
compares itself with its base on held-out cases, resumes after an interruption, and never damages a model."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
from pathlib import Path

import pytest
import torch

from napari_brainseg.__main__ import main
from napari_brainseg.export import SIDECAR_NAME
from napari_brainseg.io import find_case
from napari_brainseg.model import load_model, read_checkpoint, save_checkpoint
from napari_brainseg.synthetic import write_synthetic_case
from napari_brainseg.training.evaluate import compare_scores, evaluate_cases, format_comparison
from napari_brainseg.training.finetune import REPORT_FILE, child_version, finetune, finetune_config
from napari_brainseg.training.train import LOG_FILE, MODEL_FILE, SPLIT_FILE, drive

SHAPE = (40, 48, 32)
ORIGINAL_IDS = [f"Case_{i:03d}" for i in range(4)]
CORRECTED_IDS = ["Case_000", "Case_001"]


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, Path]:
    """(corrections, original): two corrected cases (Case_001 twice) and four original cases."""
    root = tmp_path_factory.mktemp("finetune-data")
    for seed, case_id in enumerate(ORIGINAL_IDS):
        write_synthetic_case(root / "original" / case_id, case_id, shape=SHAPE, seed=seed)
    for version, case_id in (("v001", "Case_000"), ("v001", "Case_001"), ("v002", "Case_001")):
        write_synthetic_case(root / "corrections" / case_id / version, case_id, shape=SHAPE, seed=20)
        (root / "corrections" / case_id / version / SIDECAR_NAME).write_text("{}")  # as an export leaves it
    return root / "corrections", root / "original"


def finetune_args(base: Path, corrections: Path, original: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--base", str(base), "--data", str(corrections), "--data", str(original), "--out", str(out),
            "--epochs", "1", "--steps-per-epoch", "2", "--patch-size", "32", "32", "32", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def finetuned(tiny_checkpoint, datasets, tmp_path_factory):
    """One real ``napari-brainseg finetune`` run: (run folder, its printed output, data hashes before)."""
    corrections, original = datasets
    before = {"corrections": hashes(corrections), "original": hashes(original), "base": hashes(tiny_checkpoint.parent)}
    run = tmp_path_factory.mktemp("runs") / "ft"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(finetune_args(tiny_checkpoint, corrections, original, run)) == 0
    return run, out.getvalue(), before


def test_finetuning_writes_a_checkpoint_that_names_its_parent_and_the_corrections_it_saw(finetuned):
    run, _, _ = finetuned
    _, info = load_model(run / MODEL_FILE)
    assert info.parent == "tiny"
    assert info.corrected_cases == CORRECTED_IDS
    assert set(CORRECTED_IDS) <= set(info.train_cases)
    assert info.version.startswith("0.0.1+ft")
    assert info.arch_kwargs["channels"] == [4, 8], "the base's network is kept"
    assert info.training["config"]["base"].endswith("tiny.pt")


def test_finetuning_starts_from_the_base_weights(finetuned, tiny_checkpoint):
    run, _, _ = finetuned
    base = load_model(tiny_checkpoint)[0].state_dict()
    new = load_model(run / MODEL_FILE)[0].state_dict()
    assert base.keys() == new.keys()
    changed = [k for k in base if not torch.equal(base[k], new[k])]
    assert changed, "training changed the weights"
    assert max(float((base[k] - new[k]).abs().max()) for k in changed) < 0.05, "two small steps from the base"


def test_validation_cases_are_not_fine_tuned_on(finetuned):
    run, _, _ = finetuned
    split = json.loads((run / SPLIT_FILE).read_text())
    assert split["val"] and not set(split["val"]) & set(split["train"])
    assert not set(split["val"]) & set(CORRECTED_IDS), "corrections always train"


def test_the_report_compares_base_and_new_model_on_the_validation_cases(finetuned):
    run, printed, _ = finetuned
    assert "base" in printed and "new" in printed and "change" in printed
    for metric in ("Dice_WT", "Dice_TC", "Dice_ET", "HD95_WT", "HD95_TC", "HD95_ET"):
        assert metric in printed
    assert "parent tiny" in printed
    report = json.loads((run / REPORT_FILE).read_text())
    val = json.loads((run / SPLIT_FILE).read_text())["val"]
    assert [r["case_id"] for r in report["base_rows"]] == val
    assert [r["case_id"] for r in report["new_rows"]] == val
    assert {r["metric"] for r in report["comparison"]} >= {"Dice_WT", "HD95_ET"}


def test_training_never_modifies_the_corrections_the_original_data_or_the_base(finetuned, datasets, tiny_checkpoint):
    _, _, before = finetuned
    corrections, original = datasets
    assert hashes(corrections) == before["corrections"]
    assert hashes(original) == before["original"]
    assert hashes(tiny_checkpoint.parent) == before["base"]


def test_the_report_says_plainly_when_the_new_model_is_worse():
    base = [{"case_id": "A", "Dice_WT": 0.80, "HD95_WT": 5.0, "Dice_ET": 0.70, "HD95_ET": 4.0}]
    new = [{"case_id": "A", "Dice_WT": 0.85, "HD95_WT": 7.5, "Dice_ET": 0.60, "HD95_ET": 3.0}]
    comparison = compare_scores(base, new)
    assert {r["metric"]: r["worse"] for r in comparison} == {
        "Dice_WT": False, "HD95_WT": True, "Dice_ET": True, "HD95_ET": False,
    }
    text = format_comparison(comparison, "base-model", 1)
    assert "WORSE than the base on HD95_WT, Dice_ET: keep the base model (base-model)." in text
    assert "+0.050" in text and "-0.100" in text
    better = format_comparison(compare_scores(base, base), "base-model", 1)
    assert "WORSE" not in better and "Not worse" in better


def test_the_child_version_derives_from_the_parent():
    assert child_version("1.0.0", datetime.date(2025, 1, 31)) == "1.0.0+ft20250131"
    assert child_version("1.0.0+ft20250131", datetime.date(2025, 2, 1)) == "1.0.0+ft20250201"


class Interrupted(Exception):
    pass


def test_an_interrupted_finetune_resumes_and_a_crash_leaves_every_model_intact(
    tiny_checkpoint, datasets, tmp_path, monkeypatch
):
    corrections, original = datasets
    base_bytes = tiny_checkpoint.read_bytes()
    cfg = finetune_config(tiny_checkpoint, [corrections, original], tmp_path / "run", epochs=2, steps_per_epoch=1,
                          patch_size=[32, 32, 32], device="cpu")

    def crash_at_step_2(p):
        if p.stage == "train" and p.done == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        drive(finetune(cfg, log=lambda _: None), crash_at_step_2)
    saved = (tmp_path / "run" / MODEL_FILE).read_bytes()
    assert read_checkpoint(tmp_path / "run" / MODEL_FILE)["info"]["training"]["steps_done"] == 1

    def torch_save_that_fails_midway(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("No space left on device")

    with monkeypatch.context() as patch:  # the disk fills up while the next epoch is being saved
        patch.setattr(torch, "save", torch_save_that_fails_midway)
        with pytest.raises(OSError, match="No space"):
            drive(finetune(cfg, log=lambda _: None))
    assert (tmp_path / "run" / MODEL_FILE).read_bytes() == saved, "the last good checkpoint is untouched"
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    assert tiny_checkpoint.read_bytes() == base_bytes

    messages: list[str] = []
    result = drive(finetune(cfg, log=messages.append))
    assert any("Resumed" in m and "step 1" in m for m in messages)
    log = [json.loads(line) for line in (tmp_path / "run" / LOG_FILE).read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2]
    assert result.info.parent == "tiny" and read_checkpoint(result.checkpoint)["info"]["training"]["steps_done"] == 2


def test_validation_folders_give_the_cases_to_compare_on(tiny_checkpoint, datasets, tmp_path):
    corrections, _ = datasets
    write_synthetic_case(tmp_path / "val" / "Held_001", "Held_001", shape=SHAPE, seed=30)
    cfg = finetune_config(tiny_checkpoint, [corrections], tmp_path / "run", epochs=1, steps_per_epoch=1,
                          patch_size=[32, 32, 32], device="cpu", val_data=[str(tmp_path / "val")])
    result = drive(finetune(cfg, log=lambda _: None))
    assert [r["case_id"] for r in result.new_rows] == ["Held_001"]
    assert result.info.train_cases == CORRECTED_IDS and result.info.val_cases == ["Held_001"]


def test_a_base_that_is_not_a_checkpoint_is_refused_before_training(datasets, tmp_path, capsys):
    corrections, original = datasets
    (tmp_path / "notes.pt").write_text("not a model")
    code = main(finetune_args(tmp_path / "notes.pt", corrections, original, tmp_path / "run"))
    assert code == 1
    assert "not a napari-brainseg checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_fine_tune_keeps_its_base_s_thresholds_and_compares_both_models_at_them(tiny_checkpoint, datasets,
                                                                                     tmp_path):
    network, info = load_model(tiny_checkpoint)
    info.set_thresholds([0.05, 0.05, 0.05])
    base = save_checkpoint(tmp_path / "low.pt", network, info)
    corrections, original = datasets
    run = tmp_path / "ft"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(finetune_args(base, corrections, original, run)) == 0
    new_model, new_info = load_model(run / MODEL_FILE)
    assert new_info.thresholds == [0.05, 0.05, 0.05]
    report = json.loads((run / REPORT_FILE).read_text())
    cases = [find_case(original / c) for c in json.loads((run / SPLIT_FILE).read_text())["val"]]
    for rows, model in ((report["base_rows"], network), (report["new_rows"], new_model)):
        at_own = evaluate_cases(model, cases, threshold=[0.05] * 3)
        assert [r["Dice_WT"] for r in rows] == pytest.approx([r["Dice_WT"] for r in at_own])
    assert [r["Dice_WT"] for r in evaluate_cases(network, cases)] != pytest.approx(
        [r["Dice_WT"] for r in report["base_rows"]]), "the thresholds matter here"
