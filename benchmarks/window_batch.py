"""Network time per sliding window against the number of windows run together (``WINDOW_BATCH``).

    python benchmarks/window_batch.py [--model bundled|PATH] [--threads 2] [--batches 1 2 4 8] [--repeats 3]

Random input of the model's window size; each batch size is warmed up once, then timed ``--repeats``
times; prints seconds per window and peak process memory.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from napari_brainseg.inference import WINDOW
from napari_brainseg.model import load_model


def seconds_per_window(model: torch.nn.Module, batch: int, repeats: int) -> float:
    """Mean forward time per window for batches of ``batch`` windows (after one warm-up call)."""
    x = torch.randn(batch, model_channels(model), *WINDOW)
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return (time.perf_counter() - start) / repeats / batch


def model_channels(model: torch.nn.Module) -> int:
    return next(p for p in model.parameters() if p.dim() == 5).shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, info = load_model(args.model)
    print(f"{info.model_id} {info.version}, window {WINDOW}, {args.threads} threads, torch {torch.__version__}")
    for batch in args.batches:
        seconds = seconds_per_window(model, batch, args.repeats)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"batch {batch}: {seconds:.3f} s per window (peak RSS so far {peak_mb:.0f} MB)")


if __name__ == "__main__":
    main()
