"""``napari-brainseg``: one command for the whole loop, every option with its default, a model named the same
way everywhere, long jobs that say what they will do, and an ``evaluate`` that does not score a model on the
cases it was trained on."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from napari_brainseg.__main__ import HelpFormatter, build_parser, main
from napari_brainseg.io import find_case
from napari_brainseg.model import (
    DEFAULT_ARCH_KWARGS,
    ModelInfo,
    build_network,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from napari_brainseg.registry import ENV_VAR, register_model
from napari_brainseg.synthetic import write_synthetic_case
from napari_brainseg.training.evaluate import evaluate_cases
from napari_brainseg.training.train import Trainer

REPO_ROOT = Path(__file__).resolve().parents[1]
LOOP = ["predict", "models", "train", "finetune", "evaluate", "average", "register"]
CASE_IDS = ["Case_000", "Case_001", "Case_002"]
TINY_ARCH = {**DEFAULT_ARCH_KWARGS, "channels": [4, 8], "strides": [2]}
TINY_RUN = ["--device", "cpu", "--epochs", "1", "--steps-per-epoch", "1", "--patch-size", "32", "32", "32"]


@pytest.fixture(autouse=True)
def models_dir(tmp_path, monkeypatch) -> Path:
    """An empty registry of the user's models."""
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "models"))
    return tmp_path / "models"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Three small synthetic labelled cases."""
    root = tmp_path_factory.mktemp("data")
    for seed, case_id in enumerate(CASE_IDS):
        write_synthetic_case(root / case_id, case_id, shape=(40, 48, 32), seed=seed)
    return root


def make_checkpoint(path: Path, model_id: str = "site-model", train_cases: list[str] | None = None) -> Path:
    torch.manual_seed(0)
    info = ModelInfo(model_id=model_id, version="0.0.1", arch_kwargs=dict(TINY_ARCH), train_cases=train_cases or [],
                     patch_size=[32, 32, 32])
    return save_checkpoint(path, build_network(info), info)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_top_level_help_lists_every_step_of_the_loop(capsys):
    assert main(["--help"]) == 0
    listed = re.findall(r"^ {4}([a-z]+) {2,}\S", capsys.readouterr().out, flags=re.MULTILINE)
    assert [name for name in listed if name in LOOP] == LOOP


@pytest.mark.parametrize("command", LOOP)
def test_every_option_says_what_it_does_and_its_default(command):
    parser = subcommands()[command]
    assert parser.description, f"{command} has no description"
    formatter = HelpFormatter(prog=parser.prog)
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        text = formatter._get_help_string(action)
        assert len(text) > 20, f"{command} {action.option_strings[0]} says nothing: {text!r}"
        assert "default" in text or "required" in text, f"{command} {action.option_strings[0]}: {text!r}"


def test_the_help_has_no_restructuredtext_markup(capsys):
    texts = []
    for args in [["--help"], *([name, "--help"] for name in LOOP)]:
        assert main(args) == 0
        texts.append(capsys.readouterr().out)
    assert not [text for text in texts if "``" in text or ":func:" in text]


def test_python_m_training_from_a_checkout_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "training", "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True, encoding="utf-8", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: napari-brainseg" in done.stdout and "finetune" in done.stdout


def test_predict_takes_a_registered_model_by_name(data_dir, tmp_path, capsys):
    register_model(make_checkpoint(tmp_path / "a.pt"), name="My-Site")
    out = tmp_path / "seg.nii.gz"
    assert main(["predict", str(data_dir / CASE_IDS[0]), "--output", str(out), "--model", "my-site",
                 "--device", "cpu"]) == 0
    assert "Model site-model (version 0.0.1)" in capsys.readouterr().err
    assert out.is_file()


def test_evaluate_takes_a_registered_model_by_name(data_dir, tmp_path, capsys):
    register_model(make_checkpoint(tmp_path / "a.pt"), name="my-site")
    assert main(["evaluate", "--model", "my-site", "--data", str(data_dir), "--device", "cpu"]) == 0
    assert "Model site-model (version 0.0.1) on 3 case(s)" in capsys.readouterr().out


def test_finetune_starts_from_a_registered_model_by_name(data_dir, tmp_path, capsys):
    entry = register_model(make_checkpoint(tmp_path / "a.pt"), name="my-site")
    run = tmp_path / "run"
    assert main(["finetune", "--base", "my-site", "--data", str(data_dir), "--out", str(run), *TINY_RUN]) == 0
    info = read_checkpoint(run / "model.pt")["info"]
    assert info["parent"] == "site-model"
    assert f"Base model: {entry.path}" in capsys.readouterr().out


def test_an_unknown_model_name_says_what_a_model_can_be(data_dir, tmp_path, capsys):
    assert main(["evaluate", "--model", "nobody", "--data", str(data_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No model named 'nobody'" in err and "napari-brainseg models" in err


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_a_run_says_what_it_will_do_before_the_first_step(command, data_dir, tmp_path, capsys, monkeypatch):
    printed_before_first_step = []
    first_step = Trainer._train_step

    def record_then_step(self, batch, model):
        if not printed_before_first_step:
            printed_before_first_step.append(capsys.readouterr().out)
        return first_step(self, batch, model)

    monkeypatch.setattr(Trainer, "_train_step", record_then_step)
    run = tmp_path / "run"
    model = ["--base", str(make_checkpoint(tmp_path / "a.pt"))] if command == "finetune" else [
        "--arch-kwargs", '{"channels": [4, 8], "strides": [2]}']
    assert main([command, "--data", str(data_dir), "--out", str(run), *TINY_RUN, *model]) == 0
    plan = printed_before_first_step[0]
    assert f"Data: {data_dir}" in plan
    assert "Cases: 2 for training, 1 for validation" in plan
    assert "Steps: 1 (1 epochs x 1 steps per epoch)" in plan
    assert "Device: cpu" in plan
    assert f"Output: {run.resolve()}" in plan


def test_evaluate_leaves_out_the_models_training_cases_and_says_so(data_dir, tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "a.pt", train_cases=["Case_000", "Case_002"])
    assert main(["evaluate", "--model", str(checkpoint), "--data", str(data_dir), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "on 1 case(s)" in out and "Case_001" in out and "Case_000" not in out
    assert "Leaving out the 2 case(s) site-model was trained on (Case_000, Case_002)" in err
    assert "--include-training-cases" in err


def test_evaluate_scores_the_training_cases_too_when_asked_and_warns(data_dir, tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "a.pt", train_cases=["Case_000"])
    assert main(["evaluate", "--model", str(checkpoint), "--data", str(data_dir), "--device", "cpu",
                 "--include-training-cases"]) == 0
    out, err = capsys.readouterr()
    assert "on 3 case(s)" in out and "Case_000" in out
    assert "1 of these cases were used to train site-model: Case_000; their scores are not a fair test" in err


def test_evaluate_on_training_cases_only_is_refused(data_dir, tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "a.pt", train_cases=CASE_IDS)
    assert main(["evaluate", "--model", str(checkpoint), "--data", str(data_dir)]) == 1
    assert "trained on every case given" in capsys.readouterr().err


def test_models_lists_the_bundled_and_registered_models_and_the_unusable_ones(tmp_path, models_dir, capsys):
    register_model(make_checkpoint(tmp_path / "a.pt"), name="kept")
    register_model(make_checkpoint(tmp_path / "b.pt", model_id="other"), name="gone")
    (models_dir / "gone.pt").unlink()
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("bundled: ") and "read-only" in lines[0]
    assert lines[1].startswith("kept: site-model version 0.0.1")
    assert [line for line in lines if line.startswith("unusable:") and "'gone'" in line]


def test_evaluate_scores_each_case_at_the_checkpoint_s_thresholds(data_dir, tmp_path):
    network, info = load_model(make_checkpoint(tmp_path / "a.pt"))
    info.set_thresholds([0.05, 0.05, 0.05])
    low = save_checkpoint(tmp_path / "low.pt", network, info)
    report = tmp_path / "scores.json"
    assert main(["evaluate", "--model", str(low), "--data", str(data_dir), "--device", "cpu", "--backend", "torch",
                 "--report", str(report)]) == 0
    written = json.loads(report.read_text())["cases"]
    cases = [find_case(data_dir / c) for c in CASE_IDS]
    at_own = evaluate_cases(network, cases, threshold=info.thresholds)
    at_half = evaluate_cases(network, cases)
    assert [r["Dice_WT"] for r in at_own] != [r["Dice_WT"] for r in at_half], "the thresholds matter here"
    for got, want in zip(written, at_own):
        assert got["case_id"] == want["case_id"]
        regions = [f"Dice_{r}" for r in ("WT", "TC", "ET")]
        assert [got[k] for k in regions] == pytest.approx([want[k] for k in regions])


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_predict_and_the_segment_widget_segment_with_the_checkpoint_s_own_options(make_case, tmp_path, backend):
    """A checkpoint's normalisation (here robust: median, IQR) and second pass are applied by either backend."""
    import nibabel as nib
    import numpy as np

    from napari_brainseg._widgets.segment import load_and_segment
    from napari_brainseg.backend import load_for_inference
    from napari_brainseg.inference import segment
    from napari_brainseg.io import load_case
    from napari_brainseg.preprocess import ROBUST

    files = make_case()
    case = load_case(files)
    torch.manual_seed(0)
    info = ModelInfo(model_id="robust", arch_kwargs=TINY_ARCH, normalisation=ROBUST, second_pass=True)
    network = build_network(info).eval()
    wt = segment(case.image, network, device="cpu", normalisation=ROBUST).probabilities[0]
    info.set_thresholds([float(np.percentile(wt[np.any(case.image != 0, axis=0)], 80))] * 3)  # a fifth is tumour
    path = save_checkpoint(tmp_path / "robust.pt", network, info)
    loaded = load_for_inference(path, backend, "cpu")
    expected = segment(case.image, loaded.model, device="cpu", **info.segment_options()).labels
    plain = segment(case.image, loaded.model, device="cpu", threshold=info.thresholds).labels
    once = segment(case.image, loaded.model, device="cpu", threshold=info.thresholds, normalisation=ROBUST).labels
    assert not np.array_equal(expected, plain) and not np.array_equal(expected, once), "both options matter here"
    out = tmp_path / "labels.nii.gz"
    assert main(["predict", str(files.folder), "--output", str(out), "--model", str(path), "--backend", backend]) == 0
    written = np.asarray(nib.load(out).dataobj)
    np.testing.assert_array_equal(written, np.asarray(case.geometry.to_nifti(expected).dataobj))
    if backend == "onnx":  # the Segment widget's job, which runs the CPU default
        result, _ = load_and_segment(case.image, path, "cpu", False, lambda _: None, lambda: False)
        np.testing.assert_array_equal(result.labels, expected)
