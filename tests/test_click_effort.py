"""The click benchmark's ``--report``: one table over runs saved with ``--json`` (say one per held-out fold)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def saved_run(case_id: str, whole_tumour: list[float]) -> dict:
    """A case as ``--json`` saves it: Dice after 0, 1, ... clicks, seconds per click, repainted shares."""
    return {
        "case_id": case_id,
        "dice": [{"WT": wt, "TC": 0.5, "ET": 0.5} for wt in whole_tumour],
        "seconds": [0.25] * (len(whole_tumour) - 1),
        "repaint": {"uncertainty": 0.5, "top-down": 0.6, "oracle": 0.4},
    }


def run_report(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "click_effort.py"), "--report", *map(str, paths)],
                          capture_output=True, text=True, cwd=ROOT)


def report(*paths: Path) -> list[str]:
    result = run_report(*paths)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_report_takes_medians_over_the_cases_of_every_file(tmp_path):
    quick = [0.85, 0.91, 0.92, 0.93, 0.93, 0.93, 0.96, 0.96, 0.96, 0.96, 0.96]  # 0.90 after 1 click, 0.95 after 6
    slow = [0.80, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.87, 0.88, 0.89, 0.90]  # 0.90 after 10
    first, second = tmp_path / "fold1.json", tmp_path / "fold2.json"
    first.write_text(json.dumps([saved_run("A", quick), saved_run("B", slow)]))
    second.write_text(json.dumps([saved_run("C", quick)]))

    lines = report(first, second)

    assert [line.split(" | ")[0] for line in lines[2:]] == ["| A", "| B", "| C", "| **median**"]
    median = lines[-1].split(" | ")
    assert median[1] == "0.85/0.50/0.50"  # WT after 0 clicks: the median of 0.85, 0.80, 0.85
    assert median[6:8] == ["1", "6"]  # clicks to WT 0.90: 1, 10, 1; to 0.95: 6, never, 6


def test_runs_of_different_lengths_are_cut_to_the_shortest(tmp_path):
    slow = [0.80, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.87, 0.88, 0.89, 0.90]  # 0.90 only after 10 clicks
    long_run, short_run = tmp_path / "ten.json", tmp_path / "five.json"
    long_run.write_text(json.dumps([saved_run("B", slow)]))
    short_run.write_text(json.dumps([saved_run("D", slow[:6])]))

    lines = report(long_run, short_run)

    assert "WT/TC/ET @10" not in lines[0] and "WT/TC/ET @5" in lines[0]
    assert lines[2].split(" | ")[5] == ">5"  # B reaches 0.90 after 10 clicks, beyond the table's 5


def test_files_without_cases_are_refused_with_a_message(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")

    result = run_report(empty)

    assert result.returncode != 0
    assert "hold no cases" in result.stderr


def test_the_cache_keeps_first_masks_apart_for_checkpoints_that_share_an_id_and_version(make_case, tiny_checkpoint,
                                                                                        tmp_path):
    from napari_brainseg.model import load_model, save_checkpoint

    case = make_case(folder="Synthetic_001")
    network, info = load_model(tiny_checkpoint)
    info.set_wt_growth([0.05, 3])  # another post-processing under the same id and version
    grown = save_checkpoint(tmp_path / "grown.pt", network, info)
    cache = tmp_path / "cache"
    for segmenter in (tiny_checkpoint, grown):
        result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "click_effort.py"), "--segmenter",
                                 str(segmenter), "--data", str(case.folder.parent), "--cases", "Synthetic_001",
                                 "--clicks", "1", "--threads", "1", "--cache", str(cache)],
                                capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr
    first, second = (np.load(path)["labels"] for path in sorted(cache.iterdir()))
    assert (first != second).any()


def click_effort_module():
    """The benchmark script, imported as a module."""
    spec = importlib.util.spec_from_file_location("click_effort", ROOT / "benchmarks" / "click_effort.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_click_is_told_by_its_kind_depth_and_the_whole_tumour_voxels_it_made_right_and_wrong():
    click_outcome = click_effort_module().click_outcome
    truth = np.zeros((20, 20, 20), dtype=np.uint8)
    truth[5:15, 5:15, 5:15] = 2
    before = np.zeros_like(truth)
    before[7:13, 7:13, 7:13] = 2  # a shell of oedema two voxels thick missed
    after = before.copy()
    after[5:7, 7:13, 7:13] = 2  # the click fills 72 missed voxels...
    after[2, 2, 2] = 2  # ...and adds one false one
    brain = np.ones(truth.shape, dtype=bool)

    added = click_outcome(before, after, truth, brain, (6, 10, 10, 2))
    core = click_outcome(before, before, truth, brain, (10, 10, 10, 1))

    assert added == {"kind": "adds tumour", "depth": 1.0, "made_right": 72, "made_wrong": 1}
    assert core == {"kind": "class", "depth": None, "made_right": 0, "made_wrong": 0}
    removed = click_outcome(after, before, truth, brain, (2, 2, 2, 0))
    assert removed["kind"] == "removes tumour" and removed["made_right"] == 1 and removed["made_wrong"] == 72
    nothing_yet = click_outcome(np.zeros_like(truth), before, truth, brain, (10, 10, 10, 2))
    assert nothing_yet["depth"] is None and nothing_yet["made_right"] == 216  # no tumour to measure the depth from


def test_the_report_says_where_the_clicks_went(tmp_path):
    run = saved_run("A", [0.80, 0.85, 0.86])
    run["clicks"] = [{"kind": "adds tumour", "depth": 1.0, "made_right": 90, "made_wrong": 10},
                     {"kind": "adds tumour", "depth": 2.0, "made_right": 5, "made_wrong": 20}]
    saved = tmp_path / "fold.json"
    saved.write_text(json.dumps([run]))

    lines = report(saved)

    assert "- adds tumour: 2 clicks, median depth 1.5 voxels, whole-tumour voxels made right 95, made wrong 30; " \
           "more right than wrong in 1" in lines
    assert not any(line.startswith("- removes tumour") for line in lines)
