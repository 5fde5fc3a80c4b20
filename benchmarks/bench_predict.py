"""Whole-process time and peak memory of ``napari-brainseg predict`` next to MONAI's BraTS bundle pipeline.

Each side runs as a fresh ``python`` process on the same case, with the same number of threads, reading
the same four .nii.gz and writing one label map: start-up, imports, loading, inference and writing all
count, as they do for a user. ``predict`` runs once per backend (``--backend onnx``: ONNX Runtime without
torch; ``--backend torch``). The median wall time over the repeats, its ratio to the bundle's, and the
peak resident memory of each process are reported, together with the time
:func:`napari_brainseg.io.load_case` takes in this process.

Usage::

    python benchmarks/bench_predict.py [CASE_DIR] [--model bundled|PATH] [--backends onnx torch] [--repeats 3]
        [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
REAL_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "brats2018"


def default_case() -> Path:
    cases = sorted(p for p in REAL_DATA_DIR.iterdir() if p.is_dir()) if REAL_DATA_DIR.is_dir() else []
    if not cases:
        raise SystemExit(f"error: no case given and no BraTS data in {REAL_DATA_DIR}; pass a case folder.")
    return cases[0]


def run_measured(command: list[str], threads: int) -> tuple[float, float]:
    """Run ``command`` as a child process; its wall time in s and its own peak RSS in MB (POSIX)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, unlike RUSAGE_CHILDREN
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
            raise SystemExit(f"error: {' '.join(command[:4])} ... failed:\n  " + "\n  ".join(tail))
    kilobytes = usage.ru_maxrss / (1024 if sys.platform == "darwin" else 1)  # macOS reports bytes
    return seconds, kilobytes / 1024


def measure(name: str, command_for, repeats: int, threads: int) -> dict:
    """Median wall time and peak RSS of ``repeats`` fresh runs, each writing into a new folder."""
    seconds, peaks = [], []
    for i in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            wall, peak = run_measured(command_for(Path(out)), threads)
        seconds.append(wall)
        peaks.append(peak)
        print(f"  {name} run {i + 1}/{repeats}: {wall:.2f} s, {peak:.0f} MB", file=sys.stderr)
    return {"seconds_median": statistics.median(seconds), "seconds": seconds, "peak_rss_mb": max(peaks)}


def time_load_case(case: Path, repeats: int) -> dict:
    from napari_brainseg.io import load_case

    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        load_case(case)
        seconds.append(time.perf_counter() - start)
    return {"seconds_median": statistics.median(seconds), "seconds": seconds}


def format_table(results: dict) -> str:
    bundle = results["monai_bundle_pipeline"]
    rows = [("load_case (in this process)", f"{results['load_case']['seconds_median']:.2f}", "-", "-")]
    for backend, ours in results["napari_brainseg_predict"].items():
        rows.append((f"napari-brainseg predict --backend {backend}", f"{ours['seconds_median']:.2f}",
                     f"{ours['peak_rss_mb']:.0f}", f"{results['ratio'][backend]['seconds']:.3f}x"))
    rows.append(("MONAI BraTS bundle pipeline", f"{bundle['seconds_median']:.2f}", f"{bundle['peak_rss_mb']:.0f}",
                 "1.000x"))
    header = ("", "wall s (median)", "peak RSS MB", "time / bundle")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    return "\n".join(f"{r[0]:<{widths[0]}}" + "".join(f"  {r[i]:>{widths[i]}}" for i in range(1, 4))
                     for r in [header, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", nargs="?", type=Path, default=None, help="case folder (default: first real case)")
    parser.add_argument("--model", default="bundled", help="'bundled' or a checkpoint for napari-brainseg")
    parser.add_argument("--backends", nargs="+", default=["onnx", "torch"], choices=["onnx", "torch"],
                        help="the backends of napari-brainseg predict to time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="threads of torch / ONNX Runtime on both sides")
    parser.add_argument("--json", type=Path, default=None, help="also save the results here")
    args = parser.parse_args(argv)
    case = (args.case or default_case()).resolve()

    def ours(backend: str):
        def command(out: Path) -> list[str]:
            return [sys.executable, "-m", "napari_brainseg", "predict", str(case), "--device", "cpu",
                    "--backend", backend, "--model", str(args.model), "--output-dir", str(out)]

        return command

    def bundle(out: Path) -> list[str]:
        return [sys.executable, str(HERE / "monai_bundle_predict.py"), str(case), "--threads", str(args.threads),
                "--output-dir", str(out)]

    print(f"case {case.name}, {args.threads} threads, {args.repeats} repeats", file=sys.stderr)
    results = {
        "case": str(case),
        "model": args.model,
        "threads": args.threads,
        "repeats": args.repeats,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "load_case": time_load_case(case, args.repeats),
        "napari_brainseg_predict": {
            backend: measure(f"napari-brainseg {backend}", ours(backend), args.repeats, args.threads)
            for backend in args.backends
        },
        "monai_bundle_pipeline": measure("MONAI bundle", bundle, args.repeats, args.threads),
    }
    bundle_r = results["monai_bundle_pipeline"]
    results["ratio"] = {  # napari-brainseg / bundle: below 1 is faster or smaller
        backend: {"seconds": ours_r["seconds_median"] / bundle_r["seconds_median"],
                  "peak_rss": ours_r["peak_rss_mb"] / bundle_r["peak_rss_mb"]}
        for backend, ours_r in results["napari_brainseg_predict"].items()
    }
    print(format_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"saved {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
