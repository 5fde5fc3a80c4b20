"""Train a click-refinement network (``napari-brainseg train-refine``): DeepEdit's loop on BraTS patches.

The network starts as the base segmentation model (:func:`napari_brainseg.refine.refinement_network`: the
guidance channels' weights at zero). Each training sample is a patch of :data:`refine.GUIDANCE`'s window size
(mostly centred on tumour, randomly flipped); the base model's labels on it stand for what the user sees
first. The simulated user of the click benchmark (:func:`clicks.next_click`) then clicks on the network's own
errors, 1 to ``max_clicks`` times, the network answering each click without gradients; the last answer is
trained against the expert's labels (the default loss of :mod:`.losses` on WT/TC/ET). The base model's validation
cases are left out.

Every ``save_every`` steps it writes ``RUN_DIR/model.pt`` (a click-refinement checkpoint that
``refine(..., model=...)``, the Refine widget and ``benchmarks/click_effort.py --model`` take) and
``RUN_DIR/state.pt``; run the same command again to resume.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from napari_brainseg.atomic import atomic_path
from napari_brainseg.clicks import Click, next_click
from napari_brainseg.devices import select_device
from napari_brainseg.jobs import Progress
from napari_brainseg.labels import ET, NCR, REGION_NAMES, labels_from_regions
from napari_brainseg.model import load_model, save_checkpoint
from napari_brainseg.refine import GUIDANCE, network_input, refinement_network

from .data import discover_cases, load_training_case, read_split
from .losses import region_loss
from .train import MODEL_FILE, STATE_FILE

TUMOUR_CENTRED = 0.8
"""Share of patches centred on a tumour voxel (clicks are about the tumour); the rest on any brain voxel."""


@dataclass
class RefineConfig:
    """Everything that defines a click-network run; saved in the run folder and in the checkpoint."""

    data: list[str]
    out: str
    base: str = "bundled"
    steps: int = 4000
    batch: int = 2
    max_clicks: int = 10
    lr: float = 3e-4
    device: str = "auto"
    val_split: str | None = None
    seed: int = 0
    save_every: int = 200
    patch_size: list[int] = field(default_factory=lambda: list(GUIDANCE["window"]))


def _crop(sample: dict, size: Sequence[int], rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """A (4, *size) image patch and its (*size) labels, centred on tumour for :data:`TUMOUR_CENTRED` of them."""
    image, label = sample["image"], sample["label"][0]
    pad = [(0, 0)] + [(0, max(s - n, 0)) for s, n in zip(size, label.shape)]
    image, label = np.pad(image, pad), np.pad(label, pad[1:])
    pool = label > 0 if rng.random() < TUMOUR_CENTRED and (label > 0).any() else np.any(image != 0, axis=0)
    points = np.argwhere(pool)
    centre = points[rng.randrange(len(points))] if len(points) else np.array(label.shape) // 2
    box = tuple(slice(s0, s0 + s) for s0, s in
                ((min(max(int(c) - s // 2, 0), n - s), s) for c, s, n in zip(centre, size, label.shape)))
    image, label = image[(slice(None), *box)], label[box]
    for axis in range(3):
        if rng.random() < 0.5:
            image, label = np.flip(image, axis + 1), np.flip(label, axis)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def _answer(net: torch.nn.Module, image: np.ndarray, current: np.ndarray, clicks: Sequence[Click],
            device: torch.device) -> np.ndarray:
    """The network's labels for a patch after ``clicks`` (no gradients)."""
    box = tuple(slice(0, s) for s in current.shape)
    x = network_input(image, current, clicks, box, GUIDANCE["sigma"])
    with torch.no_grad():
        logits = net(torch.from_numpy(x)[None].to(device))[0]
    return labels_from_regions((torch.sigmoid(logits) > 0.5).cpu().numpy() & np.any(image != 0, axis=0))


def simulate_session(net: torch.nn.Module, segmenter: torch.nn.Module, image: np.ndarray, truth: np.ndarray,
                     n_clicks: int, device: torch.device) -> tuple[list[Click], np.ndarray]:
    """Up to ``n_clicks`` simulated clicks on the network's own errors: all the clicks, and the labels before
    the last one (the network's input for the step that is trained)."""
    brain = np.any(image != 0, axis=0)
    with torch.no_grad():
        first = segmenter(torch.from_numpy(image)[None].to(device))[0]
    regions = first[: len(REGION_NAMES)]  # a gated ensemble's gate channel is not a region
    current = labels_from_regions((torch.sigmoid(regions) > 0.5).cpu().numpy() & brain)
    clicks: list[Click] = []
    for number in range(n_clicks):
        click = next_click(current, truth, brain)
        if click is None:
            break
        clicks.append(click)
        if number < n_clicks - 1:
            current = _answer(net, image, current, clicks, device)
    return clicks, current


class RefineTrainer:
    """Runs and resumes one click-network training run described by a :class:`RefineConfig`."""

    def __init__(self, cfg: RefineConfig, log: Callable[[str], None] = print):
        self.cfg, self.log = cfg, log
        self.run = Path(cfg.out).expanduser()
        self.device = select_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.net, self.info = refinement_network(cfg.base)
        self.segmenter, base_info = load_model(cfg.base)
        held_out = set(read_split(cfg.val_split)["val"]) if cfg.val_split else set(base_info.val_cases)
        self.cases = [c for c in discover_cases(cfg.data) if c.case_id not in held_out]
        if not self.cases:
            raise ValueError("Every case found is held out for validation; give more data or another split.")
        self.info.train_cases = sorted({c.case_id for c in self.cases})
        self.info.val_cases = sorted(held_out)
        self.info.patch_size = list(cfg.patch_size)
        self.net.to(self.device).train()
        self.segmenter.to(self.device).eval()
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=1e-5)
        self.loss_fn = region_loss()
        self.step, self.seconds = 0, 0.0
        state = self.run / STATE_FILE
        if state.exists():
            saved = torch.load(state, map_location="cpu", weights_only=False)
            self.net.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.step, self.seconds = saved["step"], saved["seconds"]
            self.log(f"Resumed {self.run} at step {self.step}.")

    def steps(self) -> Generator[Progress, None, Path]:
        """Train, yielding after every optimiser step; returns the checkpoint path."""
        cfg = self.cfg
        self.run.mkdir(parents=True, exist_ok=True)
        (self.run / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        self.log(f"{len(self.cases)} training cases ({len(self.info.val_cases)} held out), {cfg.steps} steps of "
                 f"{cfg.batch} patch(es) {cfg.patch_size}, up to {cfg.max_clicks} clicks, on {self.device.type}.")
        samples = [load_training_case(c, self.info.normalisation) for c in self.cases]
        while self.step < cfg.steps:
            start = time.perf_counter()
            rng = random.Random(cfg.seed * 100_003 + self.step)
            loss = self._train_step(samples, rng)
            self.step += 1
            self.seconds += time.perf_counter() - start
            if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                self._save()
            yield Progress("train", self.step, cfg.steps, loss)
        return self.run / MODEL_FILE

    def _train_step(self, samples: list[dict], rng: random.Random) -> float:
        inputs, targets = [], []
        self.net.eval()
        for _ in range(self.cfg.batch):
            image, truth = _crop(samples[rng.randrange(len(samples))], self.cfg.patch_size, rng)
            n_clicks = rng.randint(1, self.cfg.max_clicks)
            clicks, current = simulate_session(self.net, self.segmenter, image, truth, n_clicks, self.device)
            box = tuple(slice(0, s) for s in truth.shape)
            inputs.append(network_input(image, current, clicks, box, GUIDANCE["sigma"]))
            targets.append(np.stack([truth > 0, (truth == NCR) | (truth == ET), truth == ET]))
        self.net.train()
        x = torch.from_numpy(np.stack(inputs)).to(self.device)
        y = torch.from_numpy(np.stack(targets).astype(np.float32)).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss = self.loss_fn(self.net(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def _save(self) -> None:
        self.info.training = {"config": asdict(self.cfg), "steps_done": self.step, "seconds": round(self.seconds, 1),
                              "device": self.device.type}
        save_checkpoint(self.run / MODEL_FILE, self.net, self.info)
        with atomic_path(self.run / STATE_FILE) as temp:
            torch.save({"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "step": self.step, "seconds": self.seconds}, temp)
