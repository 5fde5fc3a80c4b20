"""Fine-tune a model on corrected cases, then compare it with its base on cases neither trained on.

:func:`finetune` drives ``napari-brainseg finetune`` and the Retrain widget. It starts from the base
checkpoint (its network, patch size and lineage), trains on the data folders given -- corrections
exported by the plugin (``<dataset>/<case_id>/v<N>/``, newest version of each case), mixed with
original cases when those are given too -- and resumes from ``RUN_DIR/state.pt`` after an
interruption. Corrected cases are oversampled: they are drawn for at least
``TrainConfig.correction_share`` (default half) of the training patches, however many original cases
there are (:func:`training.data.sampling_weights`). The data folders are only read.

The new checkpoint names its parent (``ModelInfo.parent``) and the corrected cases it saw
(``corrected_cases``). Then the base and the new model segment the same validation cases, which the
fine-tuning never trained on, and the report gives both mean scores, their difference, and a plain
verdict ("WORSE than the base on ...: keep the base model") when the new model lost ground.

Validation cases are, in order of preference: ``--val-split``'s ``val`` list, the cases in
``--val-data`` folders, the base model's own validation cases found among the original data, or a
seeded share of the original cases (of the corrected ones only when there is nothing else).

Example (a very short run on synthetic cases; real ones are e.g. ``~/corrections`` and
``../shared/data/brats2018``):
    >>> from napari_brainseg.jobs import drive
    >>> from napari_brainseg.synthetic import write_synthetic_case
    >>> for i in range(3):
    ...     _ = write_synthetic_case(f"cases/Case_{i}", f"Case_{i}", shape=(48, 56, 40), seed=i)
    >>> _ = write_synthetic_case("corrections/Case_9/v001", "Case_9", shape=(48, 56, 40), seed=9)
    >>> _ = Path("corrections/Case_9/v001/provenance.json").write_text("{}")  # an export writes it last
    >>> cfg = finetune_config("bundled", ["corrections", "cases"], "runs/ft1", epochs=1, steps_per_epoch=1,
    ...                       patch_size=[32, 32, 32], device="cpu")
    >>> result = drive(finetune(cfg, log=lambda line: None))
    >>> result.info.parent.startswith("brainseg"), result.info.corrected_cases, result.checkpoint.as_posix()
    (True, ['Case_9'], 'runs/ft1/model.pt')
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from napari_brainseg.atomic import write_text_atomic
from napari_brainseg.jobs import Progress
from napari_brainseg.model import ModelInfo, info_from_dict, load_model, read_checkpoint

from .data import is_correction
from .defaults import FINETUNE_EPOCHS, FINETUNE_LR, FINETUNE_STEPS_PER_EPOCH, FINETUNE_WARMUP
from .evaluate import compare_scores, evaluate_steps, format_comparison
from .train import TrainConfig, Trainer

REPORT_FILE = "finetune_report.json"


@dataclass
class FinetuneResult:
    """A finished fine-tuning: the new checkpoint and how it compares with its base."""

    checkpoint: Path
    info: ModelInfo
    base_id: str
    base_rows: list[dict]
    new_rows: list[dict]
    comparison: list[dict]
    report: str

    @property
    def worse(self) -> list[str]:
        """The scores on which the new model is worse than its base (empty: keep the new one)."""
        return [row["metric"] for row in self.comparison if row["worse"]]


def child_version(parent_version: str, today: _dt.date | None = None) -> str:
    """The version of a model fine-tuned from one of ``parent_version``: ``1.0.0`` -> ``1.0.0+ft20250131``."""
    return f"{parent_version.split('+')[0]}+ft{(today or _dt.date.today()):%Y%m%d}"


def finetune_config(
    base: str | Path,
    data: Sequence[str | Path],
    out: str | Path,
    epochs: int = FINETUNE_EPOCHS,
    steps_per_epoch: int = FINETUNE_STEPS_PER_EPOCH,
    **overrides,
) -> TrainConfig:
    """A :class:`TrainConfig` for fine-tuning ``base`` ("bundled" or a path) on ``data``.

    Defaults suit fine-tuning: the base's patch size, a lower learning rate, a short warm-up, a version
    derived from the base's, and validation once at the end. ``overrides`` set any other field
    (``None`` values are ignored, so CLI defaults pass through).
    """
    parent = info_from_dict(read_checkpoint(base)["info"])
    settings = {
        "data": [str(d) for d in data], "out": str(out), "base": str(base), "epochs": epochs,
        "steps_per_epoch": steps_per_epoch, "lr": FINETUNE_LR, "patch_size": list(parent.patch_size),
        "version": child_version(parent.version), "val_every": epochs,
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    cfg = TrainConfig(**settings)
    if overrides.get("warmup_steps") is None:
        cfg.warmup_steps = min(FINETUNE_WARMUP, cfg.total_steps // 10)
    return cfg


def _describe_data(trainer: Trainer) -> str:
    corrected = [c.case_id for c in trainer.train_cases if is_correction(c)]
    original = len(trainer.train_cases) - len(corrected)
    if not corrected:
        return (f"No corrected cases (v001, v002, ... folders) in the data: fine-tuning on {original} "
                "original case(s).")
    return f"Fine-tuning on {len(corrected)} corrected case(s) ({', '.join(corrected)}) and {original} original."


def finetune(cfg: TrainConfig, log: Callable[[str], None] = print) -> Generator[Progress, None, FinetuneResult | None]:
    """Fine-tune, then score base and new model on the validation cases; yields progress.

    Returns the :class:`FinetuneResult` (``None`` in the other processes of a distributed run) and
    writes it to ``RUN_DIR/finetune_report.json``. Run it with :func:`napari_brainseg.jobs.drive`; closed
    early (cancelled), it leaves the run folder at its last completed epoch, and the same call resumes.
    """
    if not cfg.base:
        raise ValueError("Fine-tuning needs a base model: 'bundled' or the path of a checkpoint.")
    trainer = Trainer(cfg, log)
    trainer.log(_describe_data(trainer))
    checkpoint = yield from trainer.steps()
    if trainer.rank != 0:
        return None
    new_model, info = load_model(checkpoint)
    base_model, base_info = load_model(cfg.base)
    cases = trainer.val_cases
    if not cases:
        report = ("No validation cases, so the new model could not be compared with its base. Give cases "
                  "not used for fine-tuning (--val-data; in napari, 'Validation cases'), or more cases.")
        base_rows, new_rows, comparison = [], [], []
    else:
        base_rows = yield from evaluate_steps(base_model, cases, trainer.device, stage="evaluate base",
                                              **base_info.segment_options())
        new_rows = trainer.val_rows or (yield from evaluate_steps(new_model, cases, trainer.device,
                                                                  stage="evaluate new", **info.segment_options()))
        comparison = compare_scores(base_rows, new_rows)
        report = format_comparison(comparison, base_info.model_id, len(cases))
        seen = sorted({c.case_id for c in cases} & set(base_info.train_cases))
        if seen:
            report = (f"Note: the base model was trained on {len(seen)} of these validation case(s) "
                      f"({', '.join(seen)}); its scores on them are optimistic.\n{report}")
    result = FinetuneResult(checkpoint, info, base_info.model_id, base_rows, new_rows, comparison, report)
    report_json = json.dumps({**asdict(result), "worse": result.worse}, indent=2, default=str)
    write_text_atomic(trainer.run / REPORT_FILE, report_json + "\n")
    return result
