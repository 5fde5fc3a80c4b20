"""The training loop: patches from cached cases, a loss on the regions WT/TC/ET (:mod:`.losses`), AdamW with warm-up
and cosine decay.

One loop serves ``train`` and ``finetune`` (which starts from a base checkpoint). It runs on one
device or under ``torchrun`` with DistributedDataParallel (gloo on CPU, NCCL with one GPU per process
on CUDA): each process trains on its own share of the cases, DDP averages the gradients, and rank 0
logs, validates and writes. Every epoch it writes ``RUN_DIR/state.pt`` (to resume after an
interruption) and ``RUN_DIR/model.pt`` (a self-describing checkpoint the plugin loads), both
atomically: a run killed while writing them leaves the previous ones whole, and the temporary file it
leaves behind is removed when the run is resumed. It is deterministic for a given seed, and a resumed
run re-seeds each epoch exactly as an uninterrupted one would, so it ends with the same weights.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from napari_brainseg.atomic import atomic_path, write_text_atomic
from napari_brainseg.devices import select_device
from napari_brainseg.jobs import Progress, ProgressCallback, ShouldStop, drive
from napari_brainseg.preprocess import NORMALISATIONS
from napari_brainseg.io import CaseFiles
from napari_brainseg.model import (
    DEFAULT_ARCH,
    DEFAULT_ARCH_KWARGS,
    SLICE_ARCH,
    ModelInfo,
    build_network,
    load_model,
    save_checkpoint,
    slice_arch_kwargs,
)

from .data import (
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
from .defaults import DEFAULT_LOSS, DICE_SOFTMAX_CE, LOSSES, PRECISIONS
from .evaluate import evaluate_steps, mean_scores
from .losses import region_loss, region_target

__all__ = ["Progress", "TrainConfig", "Trainer", "drive", "epoch_checkpoint"]  # Progress, drive: from jobs

NEW_ARCHITECTURES = {"3d": DEFAULT_ARCH, "2.5d": SLICE_ARCH}
STATE_FILE = "state.pt"
MODEL_FILE = "model.pt"
LOG_FILE = "log.jsonl"
SPLIT_FILE = "split.json"
EPOCHS_DIR = "epochs"


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
    cases_per_step: int = 1
    """Cases drawn for each optimiser step; each gives ``samples_per_case`` patches (batch = their product)."""
    tumour_share: float = 0.5
    lr: float = 2e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 200
    val_every: int = 1
    base: str | None = None
    version: str = "1.0.0"
    model_id: str | None = None
    num_workers: int = 0
    arch: str = "3d"
    """The network of a new run: ``3d`` (UNet on 3-D patches) or ``2.5d`` (UNet on axial slices); not with ``base``."""
    arch_kwargs: dict[str, Any] | None = None
    """Overrides of the default network's arguments (e.g. smaller ``channels``); not with ``base``."""
    val_data: list[str] | None = None
    """Folders of validation cases; they are left out of training."""
    correction_share: float = 0.5
    """Least share of patches drawn from corrected cases when original cases are mixed in."""
    keep_checkpoints: bool = False
    """Also keep every epoch's checkpoint as ``RUN_DIR/epochs/model-eNNN.pt`` (to average them later)."""
    normalisation: str = "z-score"
    """How a new run normalises its input, a key of :data:`~napari_brainseg.preprocess.NORMALISATIONS`; a
    fine-tune keeps its base's."""
    scale: int = 1
    """How many times coarser than the cases a new run's network reads them (2: a 2 mm context network,
    :mod:`napari_brainseg.context`); ``patch_size`` is in its coarse voxels. A fine-tune keeps its base's."""
    loss: str = DEFAULT_LOSS
    """The loss on WT/TC/ET, a key of :data:`~.losses.LOSSES`."""
    precision: str = "auto"
    """``fp32``, ``bf16`` (autocast; on a CPU, fast only with AMX or AVX-512 BF16) or ``auto``: bf16 on CUDA,
    fp32 elsewhere."""

    @property
    def total_steps(self) -> int:
        planned = self.epochs * self.steps_per_epoch
        return min(planned, self.max_steps) if self.max_steps else planned


def _distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); under torchrun, joins the process group and takes this process's GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = select_device(device_name)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _choose_val(cfg: TrainConfig, cases: Sequence[CaseFiles], val_found: Sequence[CaseFiles],
                held_out: Sequence[str]) -> list[str]:
    """Validation case ids: a split file's, the validation folders', the base model's, or a seeded split.

    Without a split file or validation folders, the base model's own validation cases are kept out when
    present; otherwise original cases are split, and corrected cases are split only when nothing else is.
    """
    known = {c.case_id for c in cases}
    if cfg.val_split:
        return [i for i in read_split(cfg.val_split)["val"] if i in known]
    if cfg.val_data:
        return sorted({c.case_id for c in val_found})
    original = known - {c.case_id for c in cases if is_correction(c)}
    kept_out = [i for i in held_out if i in original]
    if kept_out:
        return kept_out
    return make_split(sorted(original or known), cfg.val_fraction, cfg.seed)["val"]


def _resolve_split(cfg: TrainConfig, cases: Sequence[CaseFiles], val_found: Sequence[CaseFiles], run: Path,
                   held_out: Sequence[str] = ()) -> dict[str, list[str]]:
    """The run's split by case: the saved one when resuming, else a new one (no case in both lists)."""
    if (run / SPLIT_FILE).exists():
        return read_split(run / SPLIT_FILE)
    val = _choose_val(cfg, cases, val_found, held_out)
    split = {"train": sorted({c.case_id for c in cases} - set(val)), "val": val}
    if not split["train"]:
        raise ValueError("The split leaves no case to train on; give more data or a different split file.")
    return split


def _pick(by_id: dict[str, CaseFiles], ids: Sequence[str], run: Path) -> list[CaseFiles]:
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(
            f"{run / SPLIT_FILE} names case(s) {', '.join(missing)} that are not in the data given now; "
            "give the same data folders as when the run started, or a new --out folder."
        )
    return [by_id[i] for i in ids]


def _base_info(cfg: TrainConfig) -> tuple[torch.nn.Module, ModelInfo]:
    if cfg.base:
        if cfg.arch_kwargs or cfg.arch != "3d":
            raise ValueError("Fine-tuning keeps the base model's network; architecture overrides cannot apply.")
        model, parent = load_model(cfg.base)
        kept = {k: v for k, v in asdict(parent).items() if k not in ("parent", "metrics", "training", "created")}
        return model.train(), ModelInfo(**kept, parent=parent.model_id)
    overrides = cfg.arch_kwargs or {}
    if cfg.arch not in NEW_ARCHITECTURES:
        raise ValueError(f"Unknown network {cfg.arch!r}; choose one of {', '.join(NEW_ARCHITECTURES)}.")
    arch = NEW_ARCHITECTURES[cfg.arch]
    defaults = slice_arch_kwargs(overrides.get("context", 1)) if arch == SLICE_ARCH else DEFAULT_ARCH_KWARGS
    if cfg.normalisation not in NORMALISATIONS:
        raise ValueError(f"Unknown normalisation {cfg.normalisation!r}; choose one of {', '.join(NORMALISATIONS)}.")
    info = ModelInfo(model_id="", arch=arch, patch_size=list(cfg.patch_size), arch_kwargs={**defaults, **overrides},
                     normalisation=NORMALISATIONS[cfg.normalisation], scale=cfg.scale)
    return build_network(info), info


class Trainer:
    """Runs, resumes and checkpoints one training run described by a :class:`TrainConfig`."""

    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] = print):
        if cfg.precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {cfg.precision!r}; choose one of {', '.join(PRECISIONS)}.")
        if cfg.loss not in LOSSES:
            raise ValueError(f"Unknown loss {cfg.loss!r}; choose one of {', '.join(LOSSES)}.")
        self.cfg = cfg
        self.run = Path(cfg.out).expanduser()
        self.rank, self.world, self.device = _distributed(cfg.device)
        self.log = log if self.rank == 0 else (lambda _msg: None)
        _seed_everything(cfg.seed)  # the new network's initial weights
        self.model, self.info = _base_info(cfg)
        cases = discover_cases(cfg.data)
        val_found = discover_cases(cfg.val_data) if cfg.val_data else []
        self.split = _resolve_split(cfg, cases, val_found, self.run, held_out=self.info.val_cases if cfg.base else ())
        train_by_id = {c.case_id: c for c in cases}
        self.train_cases = _pick(train_by_id, self.split["train"], self.run)
        self.val_cases = _pick({**train_by_id, **{c.case_id: c for c in val_found}}, self.split["val"], self.run)
        self.val_rows: list[dict] | None = None
        self.info.version = cfg.version
        self.info.patch_size = list(cfg.patch_size)
        self.info.model_id = cfg.model_id or f"brainseg-{self.run.name}"
        # A fine-tuned model has also seen everything its parent saw.
        self.info.train_cases = sorted(set(self.split["train"]) | set(self.info.train_cases))
        self.info.val_cases = list(self.split["val"])
        corrected = {c.case_id for c in self.train_cases if is_correction(c)}
        self.info.corrected_cases = sorted(corrected | set(self.info.corrected_cases))
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        from monai.optimizers import WarmupCosineSchedule

        self.scheduler = WarmupCosineSchedule(self.optimizer, cfg.warmup_steps, cfg.total_steps)
        self.loss_fn = region_loss(cfg.loss)
        self.epoch, self.step, self.history = 0, 0, []
        self._resume()

    def plan(self) -> str:
        """What the run is about to do: data folders, case counts, steps, device and output folder."""
        cfg = self.cfg
        val_from = f" (validation from {', '.join(cfg.val_data)})" if cfg.val_data else ""
        steps = f"{cfg.total_steps} ({cfg.epochs} epochs x {cfg.steps_per_epoch} steps per epoch"
        steps += f", cut to {cfg.max_steps})" if cfg.max_steps else ")"
        if self.step:
            steps += f", resuming after step {self.step}"
        lines = [
            f"Data: {', '.join(str(Path(d).expanduser()) for d in cfg.data)}{val_from}",
            f"Cases: {len(self.train_cases)} for training, {len(self.val_cases)} for validation",
            f"Steps: {steps}",
            f"Device: {self.device.type}" + (f" x {self.world} processes" if self.world > 1 else ""),
            f"Output: {self.run.resolve()}",
        ]
        if cfg.base:
            lines.insert(0, f"Base model: {cfg.base}")
        return "\n".join(lines)

    def _resume(self) -> None:
        state_path = self.run / STATE_FILE
        if not state_path.exists():
            return
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        trained_on = state.get("normalisation", self.info.normalisation)
        if trained_on != self.info.normalisation:
            names = {description: name for name, description in NORMALISATIONS.items()}
            raise ValueError(
                f"{self.run} was trained on input normalised by {names.get(trained_on, trained_on)}, not by "
                f"{names.get(self.info.normalisation, self.info.normalisation)}; resume it with --normalisation "
                f"{names.get(trained_on, trained_on)}, or train in a new run folder."
            )
        read_at = state.get("scale", 1)
        if read_at != self.info.scale:
            raise ValueError(f"{self.run} was trained on cases read {read_at} times coarser, not {self.info.scale}; "
                             f"resume it with --scale {read_at}, or train in a new run folder.")
        trained_with = state.get("loss", DICE_SOFTMAX_CE)  # the only loss before it was recorded
        if trained_with != self.cfg.loss:
            raise ValueError(f"{self.run} was trained with the loss {trained_with}, not {self.cfg.loss}; resume it "
                             f"with --loss {trained_with}, or train in a new run folder.")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.history = state["epoch"], state["step"], state["history"]
        if self.scheduler.t_total != self.cfg.total_steps:  # resumed with more (or fewer) epochs or steps
            self.log(f"Learning-rate schedule stretched from {self.scheduler.t_total} to {self.cfg.total_steps} steps.")
            self.scheduler.t_total = self.cfg.total_steps
        self.log(f"Resumed {self.run} at epoch {self.epoch}, step {self.step}.")

    def _loader(self, samples: list[dict], weights: list[float] | None):
        from monai.data import DataLoader, Dataset

        cfg = self.cfg
        draws = cfg.steps_per_epoch * cfg.cases_per_step
        generator = torch.Generator().manual_seed(self._epoch_seed())
        if weights is None:
            sampler = torch.utils.data.RandomSampler(samples, replacement=True, num_samples=draws, generator=generator)
        else:
            sampler = torch.utils.data.WeightedRandomSampler(weights, draws, replacement=True, generator=generator)
        dataset = Dataset(samples, training_transforms(cfg.patch_size, cfg.samples_per_case, cfg.tumour_share))
        return DataLoader(dataset, batch_size=cfg.cases_per_step, sampler=sampler, num_workers=cfg.num_workers)

    def _epoch_seed(self) -> int:
        return self.cfg.seed * 100_003 + self.epoch * 1_009 + self.rank

    def _train_step(self, batch: dict, model: torch.nn.Module) -> float:
        image = batch["image"].to(self.device)
        label = batch["label"].to(self.device)
        amp = self.cfg.precision == "bf16" or (self.cfg.precision == "auto" and self.device.type == "cuda")
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(image)
        target = region_target(label, logits.shape[1])
        loss = self.loss_fn(logits.float(), target)  # the Dice sums in fp32
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def fit(self, progress: ProgressCallback | None = None, should_stop: ShouldStop | None = None) -> Path:
        """Train until the configured epochs or steps; returns the checkpoint path.

        Raises :class:`~napari_brainseg.jobs.Cancelled` when ``should_stop()`` turns true (checked
        after every step); the last completed epoch stays saved and a new run resumes from it.
        """
        return drive(self.steps(), progress, should_stop)

    def steps(self) -> Generator[Progress, None, Path]:
        """Train, yielding after every optimiser step and validation case; returns the checkpoint path.

        Closing the generator stops training: the last completed epoch stays saved.
        """
        cfg = self.cfg
        self.run.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            write_split(self.split, self.run / SPLIT_FILE)
            write_text_atomic(self.run / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")
        shard = shard_cases(self.train_cases, self.rank, self.world)
        for line in self.plan().splitlines():
            self.log(line)
        samples = [load_training_case(c, self.info.normalisation, self.info.scale) for c in shard]
        weights = sampling_weights(shard, cfg.correction_share)
        if weights is not None:
            share = sum(w for w, c in zip(weights, shard) if is_correction(c))
            self.log(f"Corrected cases are drawn for {share:.0%} of the patches.")
        model = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        epochs = -(-cfg.total_steps // cfg.steps_per_epoch)
        try:
            while self.epoch < epochs and self.step < cfg.total_steps:
                start, losses = time.perf_counter(), []
                _seed_everything(self._epoch_seed())
                model.train()
                for batch in self._loader(samples, weights):
                    if self.step >= cfg.total_steps:
                        break
                    losses.append(self._train_step(batch, model))
                    self.step += 1
                    yield Progress("train", self.step, cfg.total_steps, losses[-1])
                self.epoch += 1
                yield from self._end_epoch(losses, time.perf_counter() - start)
            if self.world > 1:
                dist.barrier()
        finally:
            if self.world > 1 and dist.is_initialized():
                dist.destroy_process_group()
        return self.run / MODEL_FILE

    def _end_epoch(self, losses: list[float], seconds: float) -> Generator[Progress, None, None]:
        entry = {"epoch": self.epoch, "step": self.step, "loss": float(np.mean(losses)) if losses else None,
                 "lr": self.scheduler.get_last_lr()[0], "seconds": round(seconds, 1)}
        last = self.epoch * self.cfg.steps_per_epoch >= self.cfg.total_steps
        if self.rank == 0 and self.val_cases and (self.epoch % self.cfg.val_every == 0 or last):
            self.model.eval()
            self.val_rows = yield from evaluate_steps(self.model, self.val_cases, device=self.device,
                                                      stage="validate", **self.info.segment_options())
            entry["val"] = mean_scores(self.val_rows)
            self.model.train()
        if self.rank == 0:
            self.history.append(entry)
            self._save(entry)  # before logging, so that an epoch whose save failed is not logged (it reruns)
            with (self.run / LOG_FILE).open("a") as fh:
                fh.write(json.dumps(entry) + "\n")
            self.log(_format_entry(entry))

    def _save(self, entry: dict) -> None:
        self.info.metrics = {"epoch": entry["epoch"], "step": entry["step"], **entry.get("val", {})}
        self.info.training = {"config": asdict(self.cfg), "epochs_done": self.epoch, "steps_done": self.step,
                              "seconds": round(sum(h["seconds"] for h in self.history), 1),
                              "world_size": self.world, "device": self.device.type}
        save_checkpoint(self.run / MODEL_FILE, self.model, self.info)
        if self.cfg.keep_checkpoints:
            save_checkpoint(epoch_checkpoint(self.run, self.epoch), self.model, self.info)
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "step": self.step,
                 "history": self.history, "normalisation": self.info.normalisation, "loss": self.cfg.loss,
                 "scale": self.info.scale}
        with atomic_path(self.run / STATE_FILE) as temp:
            torch.save(state, temp)


def epoch_checkpoint(run: str | Path, epoch: int) -> Path:
    """Where a run kept with ``keep_checkpoints`` holds the checkpoint of ``epoch``."""
    return Path(run) / EPOCHS_DIR / f"model-e{epoch:03d}.pt"


def _format_entry(entry: dict) -> str:
    text = f"epoch {entry['epoch']} step {entry['step']} loss {entry['loss']:.4f} ({entry['seconds']}s)"
    if "val" in entry:
        val = entry["val"]
        text += " | val Dice WT {Dice_WT:.3f} TC {Dice_TC:.3f} ET {Dice_ET:.3f}".format(**val)
    return text
