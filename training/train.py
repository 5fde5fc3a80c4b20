"""The training loop: patches from cached cases, Dice + BCE on WT/TC/ET, AdamW with warm-up and cosine decay.

One loop serves ``train`` and ``finetune`` (which starts from a base checkpoint). It runs on one
device or under ``torchrun`` with DistributedDataParallel (gloo on CPU, NCCL on CUDA); rank 0 logs,
validates and writes. Every epoch it writes ``RUN_DIR/state.pt`` (to resume after an interruption)
and ``RUN_DIR/model.pt`` (a self-describing checkpoint the plugin loads). It is deterministic for a
given seed, and a resumed run re-seeds each epoch exactly as an uninterrupted one would.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from napari_brainseg.inference import select_device
from napari_brainseg.io import CaseFiles
from napari_brainseg.model import ModelInfo, build_network, load_model, save_checkpoint

from .data import discover_cases, is_correction, load_training_case, make_split, read_split, training_transforms, write_split
from .evaluate import evaluate_cases, mean_scores

STATE_FILE = "state.pt"
MODEL_FILE = "model.pt"
LOG_FILE = "log.jsonl"
SPLIT_FILE = "split.json"


@dataclass
class TrainConfig:
    """Everything that defines a run; saved in the run folder and in the checkpoint."""

    data: list[str]
    out: str
    epochs: int = 60
    steps_per_epoch: int = 100
    max_steps: int | None = None
    device: str = "auto"
    val_split: str | None = None
    val_fraction: float = 0.2
    seed: int = 0
    patch_size: list[int] = field(default_factory=lambda: [96, 96, 96])
    samples_per_case: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 200
    val_every: int = 1
    base: str | None = None
    version: str = "1.0.0"
    model_id: str | None = None
    num_workers: int = 0

    @property
    def total_steps(self) -> int:
        planned = self.epochs * self.steps_per_epoch
        return min(planned, self.max_steps) if self.max_steps else planned


def _distributed() -> tuple[int, int]:
    """(rank, world size), initialising the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _resolve_split(cfg: TrainConfig, cases: Sequence[CaseFiles], run: Path) -> dict[str, list[str]]:
    if (run / SPLIT_FILE).exists():
        return read_split(run / SPLIT_FILE)
    ids = [c.case_id for c in cases]
    split = read_split(cfg.val_split) if cfg.val_split else make_split(ids, cfg.val_fraction, cfg.seed)
    known = set(ids)
    split = {k: [i for i in v if i in known] for k, v in split.items()}
    if cfg.val_split:  # cases found but not named in the split file train (e.g. new corrections)
        split["train"] = sorted(set(split["train"]) | (known - set(split["val"])))
    if not split["train"]:
        raise ValueError("The split leaves no case to train on; give more data or a different split file.")
    return split


def _base_info(cfg: TrainConfig) -> tuple[torch.nn.Module, ModelInfo]:
    if cfg.base:
        model, parent = load_model(cfg.base)
        info = ModelInfo(**{**asdict(parent), "parent": parent.model_id, "metrics": {}, "training": {}})
        return model.train(), info
    info = ModelInfo(model_id="", patch_size=list(cfg.patch_size))
    return build_network(info), info


class Trainer:
    """Runs, resumes and checkpoints one training run described by a :class:`TrainConfig`."""

    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] = print):
        self.cfg = cfg
        self.run = Path(cfg.out).expanduser()
        self.rank, self.world = _distributed()
        self.device = select_device(cfg.device)
        self.log = log if self.rank == 0 else (lambda _msg: None)
        cases = discover_cases(cfg.data)
        self.split = _resolve_split(cfg, cases, self.run)
        by_id = {c.case_id: c for c in cases}
        self.train_cases = [by_id[i] for i in self.split["train"]]
        self.val_cases = [by_id[i] for i in self.split["val"]]
        self.model, self.info = _base_info(cfg)
        self.info.version = cfg.version
        self.info.model_id = cfg.model_id or f"brainseg-{self.run.name}"
        self.info.train_cases = list(self.split["train"])
        self.info.val_cases = list(self.split["val"])
        self.info.corrected_cases = sorted(c.case_id for c in self.train_cases if is_correction(c))
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        from monai.optimizers import WarmupCosineSchedule

        self.scheduler = WarmupCosineSchedule(self.optimizer, cfg.warmup_steps, cfg.total_steps)
        from monai.losses import DiceCELoss

        self.loss_fn = DiceCELoss(sigmoid=True, batch=True)
        self.epoch, self.step, self.history = 0, 0, []
        self._resume()

    def _resume(self) -> None:
        state_path = self.run / STATE_FILE
        if not state_path.exists():
            return
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.history = state["epoch"], state["step"], state["history"]
        self.log(f"Resumed {self.run} at epoch {self.epoch}, step {self.step}.")

    def _loader(self, samples: list[dict]):
        from monai.data import DataLoader, Dataset

        steps = self.cfg.steps_per_epoch
        sampler = torch.utils.data.RandomSampler(
            samples, replacement=True, num_samples=steps, generator=torch.Generator().manual_seed(self._epoch_seed())
        )
        dataset = Dataset(samples, training_transforms(self.cfg.patch_size, self.cfg.samples_per_case))
        return DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=self.cfg.num_workers)

    def _epoch_seed(self) -> int:
        return self.cfg.seed * 100_003 + self.epoch * 1_009 + self.rank

    def _train_step(self, batch: dict, model: torch.nn.Module) -> float:
        from napari_brainseg.labels import ET, NCR

        image = batch["image"].to(self.device)
        label = batch["label"].to(self.device)
        target = torch.cat([label > 0, (label == NCR) | (label == ET), label == ET], dim=1).float()
        amp = self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = self.loss_fn(model(image), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def fit(self, progress: Callable[[int, int, float], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> Path:
        """Train until the configured epochs or steps; returns the checkpoint path."""
        cfg = self.cfg
        self.run.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            write_split(self.split, self.run / SPLIT_FILE)
            (self.run / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        self.log(f"{len(self.train_cases)} training cases, {len(self.val_cases)} validation cases, "
                 f"{self.world} process(es) on {self.device.type}; loading...")
        samples = [load_training_case(c) for c in self.train_cases[self.rank::self.world] or self.train_cases]
        model = self.model
        if self.world > 1:
            model = torch.nn.parallel.DistributedDataParallel(self.model)
        epochs = -(-cfg.total_steps // cfg.steps_per_epoch)
        while self.epoch < epochs and self.step < cfg.total_steps:
            start, losses = time.perf_counter(), []
            _seed_everything(self._epoch_seed())
            model.train()
            for batch in self._loader(samples):
                if self.step >= cfg.total_steps or (should_stop is not None and should_stop()):
                    break
                losses.append(self._train_step(batch, model))
                self.step += 1
                if progress is not None:
                    progress(self.step, cfg.total_steps, losses[-1])
            if should_stop is not None and should_stop():
                self.log("Stopped on request; the last completed epoch is saved.")
                break
            self.epoch += 1
            self._end_epoch(losses, time.perf_counter() - start)
        if self.world > 1:
            dist.barrier()
        return self.run / MODEL_FILE

    def _end_epoch(self, losses: list[float], seconds: float) -> None:
        entry = {"epoch": self.epoch, "step": self.step, "loss": float(np.mean(losses)) if losses else None,
                 "lr": self.scheduler.get_last_lr()[0], "seconds": round(seconds, 1)}
        last = self.epoch * self.cfg.steps_per_epoch >= self.cfg.total_steps
        if self.rank == 0 and self.val_cases and (self.epoch % self.cfg.val_every == 0 or last):
            self.model.eval()
            rows = evaluate_cases(self.model, self.val_cases, device=self.device)
            entry["val"] = mean_scores(rows)
            self.model.train()
        if self.rank == 0:
            self.history.append(entry)
            with (self.run / LOG_FILE).open("a") as fh:
                fh.write(json.dumps(entry) + "\n")
            self.log(_format_entry(entry))
            self._save(entry)

    def _save(self, entry: dict) -> None:
        self.info.metrics = {"epoch": entry["epoch"], "step": entry["step"], **entry.get("val", {})}
        self.info.training = {"config": asdict(self.cfg), "epochs_done": self.epoch, "steps_done": self.step,
                              "seconds": round(sum(h["seconds"] for h in self.history), 1),
                              "world_size": self.world, "device": self.device.type}
        save_checkpoint(self.run / MODEL_FILE, self.model, self.info)
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "step": self.step,
                 "history": self.history}
        tmp = self.run / f".{STATE_FILE}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.run / STATE_FILE)


def _format_entry(entry: dict) -> str:
    text = f"epoch {entry['epoch']} step {entry['step']} loss {entry['loss']:.4f} ({entry['seconds']}s)"
    if "val" in entry:
        val = entry["val"]
        text += " | val Dice WT {Dice_WT:.3f} TC {Dice_TC:.3f} ET {Dice_ET:.3f}".format(**val)
    return text
