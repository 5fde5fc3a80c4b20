"""Mutation testing of the core: put one deliberate bug at a time into a copy of the project and run its tests.

Each mutant in :data:`MUTANTS` replaces one exact snippet of one core module (it must occur exactly once, so a
mutant that no longer fits the code is reported, not silently skipped) and names the fast, Qt-free test files
that cover that module. A mutant is *killed* when those tests fail. The copy lives in a temporary folder; the
working tree is never touched.

Usage (from the repository root; slow on a busy machine, so run it niced and in the background)::

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python scripts/mutation_test.py            # all mutants
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python scripts/mutation_test.py -k inference  # names matching
    .venv/bin/python scripts/mutation_test.py --list

It prints one line per mutant and a summary (killed / tried, and the survivors); exit status 1 if any survive.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    """One bug: in ``module``, ``before`` (exactly once) becomes ``after``."""

    name: str
    module: str
    before: str
    after: str


INFERENCE_TESTS = ("tests/test_inference_values.py", "tests/test_inference.py")
TESTS: dict[str, tuple[str, ...]] = {
    "napari_brainseg/inference.py": INFERENCE_TESTS,
    "napari_brainseg/labels.py": ("tests/test_labels.py", "tests/test_inference_values.py"),
    "napari_brainseg/export.py": ("tests/test_export.py", "tests/test_manifest.py"),
    "napari_brainseg/io.py": ("tests/test_io.py", "tests/test_export.py"),
    "napari_brainseg/atomic.py": ("tests/test_atomic.py", "tests/test_export.py"),
    "napari_brainseg/measure.py": ("tests/test_measure.py",),
    "napari_brainseg/diff.py": ("tests/test_diff.py", "tests/test_export.py"),
    "napari_brainseg/refine.py": ("tests/test_refine.py",),
    "training/evaluate.py": ("tests/test_evaluate.py", *(f"tests/test_training.py::test_{name}" for name in (
        "empty_truth_and_empty_prediction_score_dice_1_and_hd95_0", "a_region_empty_on_one_side_only_scores_dice_0",
        "a_perfect_prediction_scores_dice_1_and_hd95_0", "hd95_is_measured_in_millimetres_with_the_voxel_spacing"))),
}
"""The test files run for each mutated module: its own fast tests, no GUI (the quickest to fail first)."""

INF, LAB = "napari_brainseg/inference.py", "napari_brainseg/labels.py"
EXP, IO = "napari_brainseg/export.py", "napari_brainseg/io.py"
MEA, DIF, EVA = "napari_brainseg/measure.py", "napari_brainseg/diff.py", "training/evaluate.py"
ATO = "napari_brainseg/atomic.py"
REF = "napari_brainseg/refine.py"

MUTANTS: list[Mutant] = [
    # --- inference: the issue's list
    Mutant("inference: threshold 0.3", INF, "tta: bool = False,\n    threshold: float = 0.5,",
           "tta: bool = False,\n    threshold: float = 0.3,"),
    Mutant("inference: channels decoded in reverse", INF,
           "labels_from_regions((probabilities > threshold) & brain)",
           "labels_from_regions(((probabilities > threshold) & brain)[::-1])"),
    Mutant("inference: flips not undone", INF,
           "members.append((torch.flip(probs, axes) if axes else probs)[0]",
           "members.append((probs)[0]"),
    Mutant("inference: box pasted at the origin", INF,
           "probabilities[(slice(None), *box)] = probs_crop",
           "probabilities[(slice(None), *(slice(0, s) for s in probs_crop.shape[1:]))] = probs_crop"),
    Mutant("inference: brain margin 0", INF, "BRAIN_MARGIN = 4", "BRAIN_MARGIN = 0"),
    Mutant("inference: clean-up off by default", INF, "MIN_COMPONENT_FRACTION = 0.1", "MIN_COMPONENT_FRACTION = 0.0"),
    Mutant("inference: normalise over all voxels", INF,
           "NormalizeIntensity(nonzero=True,", "NormalizeIntensity(nonzero=False,"),
    # --- inference: more
    Mutant("inference: normalise over all channels together", INF, "channel_wise=True)", "channel_wise=False)"),
    Mutant("inference: labels not restricted to the brain", INF,
           "labels_from_regions((probabilities > threshold) & brain)",
           "labels_from_regions(probabilities > threshold)"),
    Mutant("inference: >= threshold", INF, "(probabilities > threshold)", "(probabilities >= threshold)"),
    Mutant("inference: TTA takes the maximum", INF,
           "return stack.mean(axis=0), spread", "return stack.max(axis=0), spread"),
    Mutant("inference: TTA keeps the first member", INF,
           "return stack.mean(axis=0), spread", "return stack[0], spread"),
    Mutant("inference: flips over the channel axis", INF,
           "FLIP_AXES: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,))",
           "FLIP_AXES: tuple[tuple[int, ...], ...] = ((), (1,), (3,), (4,))"),
    Mutant("inference: brain box ends one voxel short", INF,
           "min(int(hits[-1]) + 1 + margin, size)", "min(int(hits[-1]) + margin, size)"),
    Mutant("inference: uncertainty from the mean, not the spread", INF,
           "spread = stack.std(axis=0).max(axis=0)", "spread = stack.mean(axis=0).max(axis=0)"),
    Mutant("inference: clean-up fraction ignored", INF,
           "labels[minor_components(labels, min_component_fraction)] = BACKGROUND",
           "labels[minor_components(labels, MIN_COMPONENT_FRACTION)] = BACKGROUND"),
    Mutant("inference: no Gaussian blending of windows", INF,
           'overlap=overlap,\n                                                mode="gaussian")',
           'overlap=overlap,\n                                                mode="constant")'),
    # --- labels
    Mutant("labels: TC wins over ET", LAB,
           "    seg[tc] = NCR\n    seg[et] = ET", "    seg[et] = ET\n    seg[tc] = NCR"),
    Mutant("labels: TC = {1, 2}", LAB, '"TC": frozenset({NCR, ET}),', '"TC": frozenset({NCR, ED}),'),
    Mutant("labels: 2023 ET not converted", LAB, "out[out == ET_2023] = ET", "out[out == ET] = ET"),
    Mutant("labels: voxel volume in cm^3 x 10", LAB,
           "float(np.prod(spacing)) / 1000.0", "float(np.prod(spacing)) / 100.0"),
    Mutant("labels: components 6-connected", LAB, "structure=np.ones((3, 3, 3), dtype=bool)", "structure=None"),
    Mutant("labels: minor = at most the fraction", LAB, "minor = sizes < fraction * sizes[1:].max()",
           "minor = sizes <= fraction * sizes[1:].max()"),
    Mutant("labels: islands include the limit", LAB, "small = sizes < min_voxels", "small = sizes <= min_voxels"),
    Mutant("labels: 3 accepted as a label", LAB, "VALID_LABELS = frozenset({BACKGROUND, NCR, ED, ET})",
           "VALID_LABELS = frozenset({BACKGROUND, NCR, ED, ET, ET_2023})"),
    # --- export and its provenance: the issue's list
    Mutant("export: next version = count + 1", EXP, "version = max(existing_versions(case_dir), default=0) + 1",
           "version = len(existing_versions(case_dir)) + 1"),
    Mutant("export: sidecar spacing reversed", EXP, '"spacing_mm": list(geometry.spacing),',
           '"spacing_mm": list(geometry.spacing)[::-1],'),
    Mutant("export: source naming always brats2018", EXP, '"naming": files.naming,', '"naming": "brats2018",'),
    Mutant("io: exported qform_code forced to 1", IO,
           'image.set_qform(self.affine, int(self.header["qform_code"]) or 1)',
           "image.set_qform(self.affine, 1)"),
    # --- export and io: more
    Mutant("io: exported sform_code forced to 2", IO,
           'image.set_sform(self.affine, int(self.header["sform_code"]) or 1)',
           "image.set_sform(self.affine, 2)"),
    Mutant("io: display spacing in source order", IO,
           "        display[order] = zooms\n", "        display[:] = zooms\n"),
    Mutant("export: version folders of three digits only", EXP, r'VERSION_DIR = re.compile(r"^v(\d+)$")',
           r'VERSION_DIR = re.compile(r"^v(\d{3})$")'),
    Mutant("export: the prediction is not validated", EXP,
           '        prediction = _validated(prediction, geometry, "model\'s prediction")\n', ""),
    Mutant("export: untouched counts as changed by hand", EXP, 'corrections["changed_voxels"] > 0',
           'corrections["changed_voxels"] >= 0'),
    Mutant("atomic: a read-only file system is not a permission problem", ATO,
           "NO_PERMISSION = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})",
           "NO_PERMISSION = frozenset({errno.EACCES, errno.EPERM})"),
    Mutant("export: a failed first export leaves its case folder", EXP,
           "if folder is None and created_case_dir:", "if folder is None and not created_case_dir:"),
    Mutant("export: compressed sources compressed again", EXP, 'if source.name.lower().endswith(".gz"):',
           'if source.name.lower().endswith(".nii"):'),
    Mutant("export: labels stored as int16", EXP,
           "geometry.to_nifti(labels, np.uint8)", "geometry.to_nifti(labels, np.int16)"),
    Mutant("export: local time without a zone", EXP,
           '"exported_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),',
           '"exported_utc": _dt.datetime.now().isoformat(timespec="seconds"),'),
    Mutant("export: volumes not rounded", EXP, "{k: round(v, 4) for k, v in", "{k: v for k, v in"),
    Mutant("export: sidecar format version 2", EXP, "SIDECAR_FORMAT_VERSION = 1", "SIDECAR_FORMAT_VERSION = 2"),
    # --- measurements and metrics: the issue's list
    Mutant("measure: perpendicular edge from the smallest spacing", MEA,
           "width + voxel_extent(across, in_plane),", "width + float(in_plane.min()),"),
    Mutant("measure: measurable judged on the longer diameter", MEA,
           "return min(self.longest_mm, self.perpendicular_mm) >= MEASURABLE_MM",
           "return max(self.longest_mm, self.perpendicular_mm) >= MEASURABLE_MM"),
    Mutant("evaluate: HD at the 100th percentile", EVA, "percentile=95,", "percentile=100,"),
    Mutant("diff: prediction labels not validated", DIF, "    check_labels(prediction)\n", ""),
    # --- measurements and metrics: more
    Mutant("measure: longest edge from the smallest spacing", MEA,
           "length + voxel_extent(direction, in_plane),", "length + float(in_plane.min()),"),
    Mutant("measure: perpendicular strips as wide as the largest spacing", MEA,
           "step_mm=float(in_plane.min())", "step_mm=float(in_plane.max())"),
    Mutant("measure: 6-connected lesion", MEA, "structure=np.ones((3,) * mask.ndim, dtype=bool)", "structure=None"),
    Mutant("measure: spacing ignored in plane", MEA,
           "in_plane = np.array([s for a, s in enumerate(spacing) if a != axis], dtype=float)",
           "in_plane = np.ones(2)"),
    Mutant("evaluate: HD without the spacing", EVA, "percentile=95, spacing=list(spacing)", "percentile=95"),
    Mutant("evaluate: empty on both sides scores 0", EVA,
           'scores[f"Dice_{name}"] = 1.0 if both_empty else 0.0', 'scores[f"Dice_{name}"] = 0.0'),
    Mutant("evaluate: higher Dice called worse", EVA,
           'worse = change < 0 if metric.startswith("Dice_") else change > 0',
           'worse = change > 0 if metric.startswith("Dice_") else change < 0'),
    Mutant("evaluate: changes not rounded", EVA, "change = round(new[metric] - base[metric], 3)",
           "change = new[metric] - base[metric]"),
    Mutant("evaluate: regions from the wrong map", EVA,
           "pred_regions, true_regions = regions_from_labels(pred), regions_from_labels(truth)",
           "pred_regions, true_regions = regions_from_labels(pred), regions_from_labels(pred)"),
    Mutant("diff: added and removed swapped", DIF,
           "added = int(matrix[:, label].sum() - matrix[label, label])",
           "added = int(matrix[label, :].sum() - matrix[label, label])"),
    Mutant("diff: relabelled counted as added", DIF,
           "out[changed & (prediction == BACKGROUND)] = ADDED", "out[changed & (corrected != BACKGROUND)] = ADDED"),
    # --- click refinement: region growing and the border fit
    Mutant("refine: added core grows as a shell", REF, "if side.any() and not _adds_core(current, click):",
           "if side.any():"),
    Mutant("refine: a click's depth box too small", REF, "r = int(np.ceil(cap))", "r = int(np.ceil(cap)) // 2"),
    Mutant("refine: a click's depth never capped", REF, "if local.all():\n        return cap",
           "if local.all():\n        return 0.0"),
    Mutant("refine: fit changes joined through the whole tumour", REF,
           "added = _joined(scored & ~tumour, asked & says_tumour, tumour & ~was_tumour)",
           "added = _joined(scored & ~tumour, asked & says_tumour, tumour)"),
    Mutant("refine: fit removes any class", REF, "tumour & ~scored & (window == ED)", "tumour & ~scored"),
    Mutant("refine: no limit on a fit's change", REF, "if added.sum() + removed.sum() > MAX_BORDER_CHANGE",
           "if added.sum() + removed.sum() > 100 * MAX_BORDER_CHANGE"),
    Mutant("refine: clicks ignored by the fit", REF, "np.where(asked, CLICK_WEIGHT * band.sum()",
           "np.where(asked, 0 * band.sum()"),
]


ISSUE_20 = {m.name for m in MUTANTS if m.name in {
    "inference: threshold 0.3", "inference: channels decoded in reverse", "inference: flips not undone",
    "inference: box pasted at the origin", "inference: brain margin 0", "inference: clean-up off by default",
    "inference: normalise over all voxels", "export: next version = count + 1", "export: sidecar spacing reversed",
    "export: source naming always brats2018", "io: exported qform_code forced to 1",
    "measure: perpendicular edge from the smallest spacing", "measure: measurable judged on the longer diameter",
    "evaluate: HD at the 100th percentile", "diff: prediction labels not validated"}}
"""The bugs that issue 20 found the suite blind to; they run first."""


def mutated_source(text: str, mutant: Mutant) -> str:
    """The module's text with the mutant applied; the snippet must occur exactly once."""
    count = text.count(mutant.before)
    if count != 1:
        raise ValueError(f"mutant {mutant.name!r}: its snippet occurs {count} times in {mutant.module}; update it.")
    return text.replace(mutant.before, mutant.after)


def copy_project(target: Path) -> None:
    """Copy the tracked and untracked-but-not-ignored files of the working tree (no venv, no data)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():  # e.g. napari_brainseg/training -> ../training
            os.symlink(os.readlink(source), target / name)
        elif source.is_file():
            shutil.copy2(source, target / name)


def preload() -> None:
    """Import the heavy third-party libraries once; every test run forks from this process (seconds each)."""
    import monai.inferers  # noqa: F401
    import monai.metrics  # noqa: F401
    import monai.transforms  # noqa: F401
    import nibabel  # noqa: F401
    import pytest  # noqa: F401
    import scipy.ndimage  # noqa: F401
    import scipy.spatial  # noqa: F401
    import torch  # noqa: F401


def run_tests(root: Path, tests: tuple[str, ...], timeout: float, log: Path) -> tuple[str, str]:
    """Run ``tests`` in ``root`` in a forked child: ("killed" | "survived" | "timeout", pytest's last line).

    The project itself is imported only in the child, from ``root``, so each run sees that copy's code.
    """
    pid = os.fork()
    if pid == 0:  # child
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(root)
            sys.path.insert(0, str(root))
            import pytest

            code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", *tests])
        except BaseException:  # noqa: BLE001 - report anything as a failed run
            code = 3
        os._exit(int(code))
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", "timed out"
        time.sleep(0.2)
    lines = log.read_text(errors="replace").strip().splitlines()
    return ("killed" if os.waitstatus_to_exitcode(status) != 0 else "survived"), (lines[-1] if lines else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--match", action="append", default=[],
                        help="only mutants whose name contains this text (repeat for several)")
    parser.add_argument("--exclude", action="append", default=[], help="leave out mutants whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant's test run")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="do not first check that the unmutated tests pass (when you have just run them)")
    args = parser.parse_args(argv)
    chosen = sorted((m for m in MUTANTS if (not args.match or any(text in m.name for text in args.match))
                     and not any(text in m.name for text in args.exclude)), key=lambda m: m.name not in ISSUE_20)
    if args.list:
        print("\n".join(f"{m.name}  [{m.module}]" for m in chosen))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # no napari / pytest-qt plugins: the core tests need none
    preload()
    outcomes: dict[str, list[Mutant]] = {"killed": [], "survived": [], "timeout": []}
    with tempfile.TemporaryDirectory(prefix="mutants-") as folder:
        root = Path(folder) / "project"
        copy_project(root)
        log = Path(folder) / "pytest.log"
        if not args.skip_baseline:
            baseline = tuple(sorted({t for m in chosen for t in TESTS[m.module]}))
            outcome, last = run_tests(root, baseline, args.timeout * 3, log)
            if outcome != "survived":
                print(f"The unmutated project fails its tests ({last}); fix that first.")
                return 2
            print(f"baseline: {last}", flush=True)
        for number, mutant in enumerate(chosen, 1):
            path = root / mutant.module
            original = path.read_text()
            path.write_text(mutated_source(original, mutant))
            start = time.perf_counter()
            try:
                outcome, last = run_tests(root, TESTS[mutant.module], args.timeout, log)
            finally:
                path.write_text(original)
            outcomes[outcome].append(mutant)
            print(f"[{number}/{len(chosen)}] {outcome.upper() if outcome != 'killed' else outcome:8} {mutant.name}"
                  f"  ({time.perf_counter() - start:.0f} s: {last})", flush=True)
    print(f"\nkilled {len(outcomes['killed'])} / tried {len(chosen)}")
    for outcome in ("survived", "timeout"):
        for mutant in outcomes[outcome]:
            print(f"{outcome}: {mutant.name} [{mutant.module}]")
    return 1 if outcomes["survived"] or outcomes["timeout"] else 0


if __name__ == "__main__":
    sys.exit(main())
