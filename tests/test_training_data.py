"""Training data: which cases are found where, which version of a corrected case is used, how cases are split,
how patches are drawn."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_brainseg.export import SIDECAR_NAME, export_correction
from napari_brainseg.io import BratsInputError, load_case
from napari_brainseg.labels import ET, ET_2023
from napari_brainseg.preprocess import OUTSIDE_TUMOUR
from napari_brainseg.training.data import (
    IncompleteVersionWarning,
    discover_cases,
    is_correction,
    load_training_case,
    make_split,
    read_split,
    sampling_weights,
    shard_cases,
    training_transforms,
    write_split,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_cases_in_both_brats_namings_are_found_recursively(make_case, tmp_path):
    make_case("Brats18_A_1", "brats2018", folder="data/2018/Brats18_A_1")
    make_case("BraTS-GLI-00001-000", "brats2023", folder="data/2023/deeper/BraTS-GLI-00001-000")
    found = discover_cases([tmp_path / "data"])
    assert [(c.case_id, c.naming) for c in found] == [
        ("BraTS-GLI-00001-000", "brats2023"),
        ("Brats18_A_1", "brats2018"),
    ]


def test_a_data_folder_that_is_itself_a_case_is_found(make_case):
    files = make_case("Brats18_A_1")
    assert [c.case_id for c in discover_cases([files.folder])] == ["Brats18_A_1"]


def test_cases_without_labels_are_not_training_cases(make_case, tmp_path):
    make_case("Labelled_1", folder="data/Labelled_1")
    make_case("Unlabelled_1", folder="data/Unlabelled_1", with_seg=False)
    assert [c.case_id for c in discover_cases([tmp_path / "data"])] == ["Labelled_1"]


def test_brats2023_enhancing_tumour_label_3_is_read_as_4(make_case):
    files = make_case("BraTS-GLI-00001-000", "brats2023")
    label = load_training_case(discover_cases([files.folder])[0])["label"]
    assert ET in label and ET_2023 not in label


def test_a_training_case_is_cropped_to_the_brain_and_normalised(make_case):
    case = load_training_case(make_case("Brats18_A_1"))
    image, label = case["image"], case["label"]
    assert image.shape[0] == 4 and label.shape == (1, *image.shape[1:])
    brain = image[0] != 0
    assert abs(float(image[0][brain].mean())) < 1e-3 and abs(float(image[0][brain].std()) - 1) < 1e-2


def test_a_case_for_a_model_normalised_outside_the_tumour_leaves_the_expert_tumour_out_of_the_statistics(make_case):
    case = load_training_case(make_case("Brats18_A_1"), OUTSIDE_TUMOUR)
    image, tumour = case["image"], case["label"][0] != 0
    for channel in image:
        healthy = (channel != 0) & ~tumour
        assert abs(float(channel[healthy].mean())) < 1e-3 and abs(float(channel[healthy].std()) - 1) < 1e-2
    whole = load_training_case(make_case("Brats18_A_1"))["image"]
    assert not np.allclose(image, whole), "the tumour changes the statistics of the whole brain"


def make_correction(make_case, case_id: str, version: str, seed: int = 0, **changes):
    """A corrections version as an export writes it (the four modalities, labels, the sidecar)."""
    files = make_case(case_id, folder=f"corrections/{case_id}/{version}", seed=seed, **changes)
    (files.folder / SIDECAR_NAME).write_text("{}")
    return files


def test_the_newest_version_of_a_corrected_case_is_used(make_case, tmp_path):
    for version, seed in (("v001", 1), ("v002", 2), ("v010", 3)):
        make_correction(make_case, "Case_1", version, seed)
    (chosen,) = discover_cases([tmp_path / "corrections"])
    assert chosen.folder.name == "v010" and is_correction(chosen)


def test_all_versions_lists_every_export_oldest_first(make_case, tmp_path):
    for version in ("v001", "v002"):
        make_correction(make_case, "Case_1", version)
    found = discover_cases([tmp_path / "corrections"], all_versions=True)
    assert [c.folder.name for c in found] == ["v001", "v002"]


@pytest.mark.parametrize("corrections_first", [True, False])
def test_a_correction_replaces_the_original_case_whatever_the_folder_order(make_case, tmp_path, corrections_first):
    make_case("Case_1", folder="original/Case_1")
    make_case("Case_2", folder="original/Case_2")
    make_correction(make_case, "Case_1", "v001", seed=5)
    folders = [tmp_path / "original", tmp_path / "corrections"]
    found = {c.case_id: c for c in discover_cases(folders[::-1] if corrections_first else folders)}
    assert is_correction(found["Case_1"]) and found["Case_1"].folder.name == "v001"
    assert not is_correction(found["Case_2"])


def lose(files, what: str) -> None:
    """Take one file out of a corrections version, as a hand edit or a partial copy would."""
    {"sidecar": files.folder / SIDECAR_NAME, "labels": files.seg, "t1ce": files.images["t1ce"]}[what].unlink()


@pytest.mark.parametrize(("lost", "reason"), [("sidecar", f"no {SIDECAR_NAME} sidecar"), ("labels", "no labels"),
                                              ("t1ce", "Missing modality: T1ce")])
def test_an_incomplete_version_is_reported_by_case_and_version_and_an_older_one_used(make_case, tmp_path, lost,
                                                                                      reason):
    make_correction(make_case, "Case_1", "v001")
    lose(make_correction(make_case, "Case_1", "v002"), lost)
    make_correction(make_case, "Case_2", "v001")
    with pytest.warns(IncompleteVersionWarning) as caught:
        found = discover_cases([tmp_path / "corrections"])
    assert [(c.case_id, c.folder.name) for c in found] == [("Case_1", "v001"), ("Case_2", "v001")]
    (message,) = [str(w.message) for w in caught]
    assert "case Case_1, version v002, are incomplete and skipped" in message
    assert reason in message and "its version v001 is used instead" in message


def test_a_case_whose_only_version_is_incomplete_falls_back_to_the_original_or_is_left_out(make_case, tmp_path):
    make_case("Case_1", folder="original/Case_1")
    lose(make_correction(make_case, "Case_1", "v001"), "sidecar")
    lose(make_correction(make_case, "Case_2", "v001"), "labels")
    with pytest.warns(IncompleteVersionWarning) as caught:
        found = discover_cases([tmp_path / "original", tmp_path / "corrections"])
    assert [(c.case_id, is_correction(c)) for c in found] == [("Case_1", False)]
    first, second = (str(w.message) for w in caught)
    assert "case Case_1, version v001" in first and "the original case in" in first
    assert "case Case_2, version v001" in second and "the case is left out" in second


def test_an_export_published_during_the_walk_is_never_entered_half_written(make_case, tmp_path, monkeypatch):
    make_correction(make_case, "Case_1", "v001")
    in_progress = make_correction(make_case, "Case_1", ".export~tmp~1~host~0123abcd").folder
    real_scandir = os.scandir

    class Listing(list):
        """A finished listing that, like os.scandir's, is also a context manager and an iterator."""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def __next__(self):
            if not self:
                raise StopIteration
            return self.pop(0)

    def scandir_then_publish(path="."):
        listing = Listing(real_scandir(path))
        if Path(path) == in_progress.parent and in_progress.exists():
            in_progress.rename(in_progress.parent / "v002")  # the export finishes while discovery walks
        return listing

    monkeypatch.setattr(os, "scandir", scandir_then_publish)
    found = discover_cases([tmp_path / "corrections"], all_versions=True)
    assert [c.folder.name for c in found] == ["v001"], "the listing came before v002 existed"


def test_discovery_while_exports_run_finds_only_complete_versions(make_case, tmp_path):
    source = load_case(make_case("Case_1"))
    dataset = tmp_path / "corrections"
    export_correction(dataset, source.files, source.geometry, source.seg)
    script = ("import pickle, sys; from napari_brainseg.export import export_correction\n"
              "args = pickle.load(open(sys.argv[1], 'rb'))\n"
              "for _ in range(30): export_correction(*args)")
    (tmp_path / "args.pkl").write_bytes(pickle.dumps((dataset, source.files, source.geometry, source.seg)))
    exporters = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "args.pkl")], cwd=REPO_ROOT)
                 for _ in range(2)]
    scans = 0
    while any(e.poll() is None for e in exporters) or not scans:
        for files in discover_cases([dataset], all_versions=True):
            assert files.seg is not None and (files.folder / SIDECAR_NAME).is_file()
        scans += 1
    assert all(e.returncode == 0 for e in exporters)
    assert len(discover_cases([dataset], all_versions=True)) == 61


def test_a_missing_data_folder_or_no_cases_is_explained(tmp_path):
    with pytest.raises(BratsInputError, match="does not exist"):
        discover_cases([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BratsInputError, match="No labelled BraTS cases"):
        discover_cases([tmp_path / "empty"])


def test_a_split_is_by_case_seeded_and_keeps_a_case_for_each_side():
    ids = [f"Case_{i}" for i in range(10)]
    split = make_split(ids, val_fraction=0.2, seed=3)
    assert set(split["train"]) | set(split["val"]) == set(ids)
    assert not set(split["train"]) & set(split["val"])
    assert len(split["val"]) == 2
    assert make_split(list(reversed(ids)), val_fraction=0.2, seed=3) == split
    two = make_split(["A", "B"], val_fraction=0.01)
    assert len(two["train"]) == len(two["val"]) == 1


def test_a_split_file_round_trips_and_overlaps_are_refused(tmp_path):
    write_split({"train": ["A", "B"], "val": ["C"]}, tmp_path / "split.json")
    assert read_split(tmp_path / "split.json") == {"train": ["A", "B"], "val": ["C"]}
    (tmp_path / "bad.json").write_text(json.dumps({"train": ["A"], "val": ["A"]}))
    with pytest.raises(BratsInputError, match="both train and val"):
        read_split(tmp_path / "bad.json")
    (tmp_path / "odd.json").write_text("[]")
    with pytest.raises(BratsInputError, match="'train' and 'val'"):
        read_split(tmp_path / "odd.json")


HELD_OUT_FOLDS = ("brats2018-heldout4.json", "brats2018-heldout4b.json", "brats2018-heldout5c.json",
                  "brats2018-heldout4d.json")


def test_the_shipped_held_out_folds_hold_out_different_cases_and_train_on_all_the_others():
    every_case = set(read_split(REPO_ROOT / "training" / "splits" / "brats2018-all.json")["train"])
    held_out = []
    for name in HELD_OUT_FOLDS:
        split = read_split(REPO_ROOT / "training" / "splits" / name)
        assert set(split["train"]) | set(split["val"]) == every_case, name
        held_out += split["val"]
    assert len(held_out) == len(set(held_out)), "a case is held out by two folds"


def test_corrected_cases_are_drawn_for_at_least_their_share_of_patches(make_case, tmp_path):
    originals = [make_case(f"Orig_{i}", folder=f"original/Orig_{i}") for i in range(3)]
    corrected = make_case("Case_1", folder="corrections/Case_1/v001")
    weights = np.array(sampling_weights([*originals, corrected], correction_share=0.5))
    assert weights.sum() == pytest.approx(1)
    assert weights[3] == pytest.approx(0.5), "one corrected case among three originals still gets half"
    assert np.allclose(weights[:3], 0.5 / 3)
    assert sampling_weights(originals, 0.5) is None, "nothing to balance without corrections"
    with pytest.raises(ValueError, match="between 0 and 1"):
        sampling_weights(originals, 1.5)


def test_processes_share_the_cases_with_corrections_dealt_out_evenly(make_case, tmp_path):
    originals = [make_case(f"Orig_{i}", folder=f"original/Orig_{i}") for i in range(4)]
    corrected = [make_case(f"Case_{i}", folder=f"corrections/Case_{i}/v001") for i in range(2)]
    cases = sorted([*originals, *corrected], key=lambda c: c.case_id)
    shards = [shard_cases(cases, rank, 2) for rank in range(2)]
    assert sorted(c.case_id for shard in shards for c in shard) == sorted(c.case_id for c in cases)
    assert all(sum(is_correction(c) for c in shard) == 1 for shard in shards)
    assert shard_cases(cases[:1], 1, 2) == cases[:1], "a process without a case of its own uses them all"


def _striped_case(shape=(24, 48, 48)) -> dict:
    """Four channels of noise over a brain; labels in axial stripes: even slices 1, odd slices 2."""
    rng = np.random.default_rng(0)
    label = np.where(np.arange(shape[0]) % 2 == 0, 1, 2).astype(np.uint8)[:, None, None] * np.ones(shape, np.uint8)
    return {"image": rng.normal(size=(4, *shape)).astype(np.float32), "label": label[None]}


def test_patches_have_the_patch_size_and_keep_brats_labels():
    patches = training_transforms([16, 32, 32], samples_per_case=3)(_striped_case())
    assert len(patches) == 3
    for patch in patches:
        assert tuple(patch["image"].shape) == (4, 16, 32, 32) and tuple(patch["label"].shape) == (1, 16, 32, 32)
        assert set(np.unique(np.asarray(patch["label"])).tolist()) <= {0, 1, 2}


def test_thin_slabs_are_never_rotated_out_of_their_axial_planes():
    """A 2.5-D model's slab keeps each output slice from one input slice: its labels never mix stripes."""
    transforms = training_transforms([4, 32, 32], samples_per_case=4)
    for seed in range(10):
        transforms.set_random_state(seed)
        for patch in transforms(_striped_case()):
            for plane in np.asarray(patch["label"])[0]:
                assert len(set(np.unique(plane).tolist()) - {0}) <= 1
