"""Default settings of training and fine-tuning runs, free of torch so that the command line can show them."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "brats2018"
"""The BraTS 2018 cases next to a checkout of the repository (``../shared/data/brats2018``)."""

FINETUNE_EPOCHS = 10
FINETUNE_STEPS_PER_EPOCH = 50
FINETUNE_LR = 5e-4
FINETUNE_WARMUP = 20
PRECISIONS = ("auto", "fp32", "bf16")
"""Training precisions: autocast to bf16, none, or bf16 on CUDA only (``auto``)."""
DICE_BCE = "dice-bce"
DICE_SOFTMAX_CE = "dice-softmax-ce"
TVERSKY_SOFTMAX_CE = "tversky-softmax-ce"
TVERSKY_ALPHA, TVERSKY_BETA = 0.3, 0.7
"""The Tversky loss's weights of false positives and false negatives (Dice: 0.5 each)."""
LOSSES = {
    DICE_SOFTMAX_CE: "MONAI's DiceCELoss, whose cross-entropy is a softmax across the overlapping regions: every "
                     "shipped model's",
    DICE_BCE: "batch Dice + binary cross-entropy per region; lower on held-out cases at this project's CPU schedule",
    TVERSKY_SOFTMAX_CE: "the default with its Dice swapped for a batch Tversky loss that weighs a missed voxel 0.7 and "
                        "a false one 0.3; lower on every region of a held-out fold at this project's CPU schedule",
}
"""The losses on the regions WT/TC/ET (:mod:`.losses` builds them), the default first."""
DEFAULT_LOSS = DICE_SOFTMAX_CE
"""The loss of every shipped model and measured recipe: ``dice-bce`` scored lower on every region of session 7's
held-out cases (model card, *Session 13*)."""
