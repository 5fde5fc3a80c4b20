"""Training the click network (``napari-brainseg train-refine``), for a few steps on tiny synthetic cases."""

from __future__ import annotations

import json

import numpy as np
import torch

from napari_brainseg.__main__ import main
from napari_brainseg.clicks import next_click
from napari_brainseg.inference import normalise
from napari_brainseg.io import load_case
from napari_brainseg.model import load_model
from napari_brainseg.refine import GUIDANCE, REFINEMENT, load_refinement_model, refine, refinement_network
from napari_brainseg.training.refine import simulate_session


def test_the_simulated_session_clicks_on_the_networks_own_errors(make_case, tiny_checkpoint):
    case = load_case(make_case())
    image = normalise(case.image)
    network, _ = refinement_network(tiny_checkpoint)
    segmenter, _ = load_model(tiny_checkpoint)
    clicks, before_last = simulate_session(network, segmenter, image, case.seg, 3, torch.device("cpu"))
    assert 1 <= len(clicks) <= 3
    assert all(case.seg[z, y, x] == label for z, y, x, label in clicks), "each click carries the expert's label"
    assert before_last.shape == case.seg.shape and before_last.dtype == np.uint8


def test_train_refine_writes_a_click_checkpoint_that_refine_takes_and_resumes(make_case, tiny_checkpoint, tmp_path,
                                                                              capsys):
    data = tmp_path / "data"
    for i in range(2):
        make_case(case_id=f"Synthetic_{i:03d}", seed=i, folder=data / f"case{i}")
    run = tmp_path / "run"
    args = ["train-refine", "--data", str(data), "--out", str(run), "--base", str(tiny_checkpoint), "--steps", "2",
            "--batch", "1", "--max-clicks", "2", "--device", "cpu", "--save-every", "1"]
    assert main(args) == 0
    assert "Click-refinement checkpoint" in capsys.readouterr().out
    network, info = load_refinement_model(run / "model.pt")
    assert info.kind == REFINEMENT and info.guidance == GUIDANCE and info.parent == "tiny"
    assert info.training["steps_done"] == 2
    assert sorted(info.train_cases) == ["Synthetic_000", "Synthetic_001"]
    assert json.loads((run / "config.json").read_text())["steps"] == 2

    case = load_case(make_case(case_id="Synthetic_009", seed=9))
    labels = np.zeros_like(case.seg)
    click = next_click(labels, case.seg, np.any(case.image != 0, axis=0))
    assert refine(case.image, labels, [click], model=run / "model.pt")[click[:3]] == click[3]

    steps = args.index("--steps") + 1
    assert main([*args[:steps], "3", *args[steps + 1 :]]) == 0, "a longer run resumes"
    assert "Resumed" in capsys.readouterr().out
    assert load_refinement_model(run / "model.pt")[1].training["steps_done"] == 3
