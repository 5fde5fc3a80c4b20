"""Atomic file writes: a file is replaced by a complete new version or left exactly as it was.

Everything is first written to a hidden temporary file in the target's folder, then renamed onto the
target in one step (``os.replace``); a failed or interrupted write removes the temporary file.

Example:
    >>> import nibabel as nib
    >>> import numpy as np
    >>> image = nib.Nifti1Image(np.zeros((4, 5, 6), dtype=np.uint8), np.eye(4))
    >>> with atomic_path("case_seg.nii.gz") as temp:
    ...     nib.save(image, temp)  # temp ends in .nii.gz too, so nibabel writes the same format
    >>> nib.load("case_seg.nii.gz").shape, sorted(p.name for p in Path(".").iterdir())
    ((4, 5, 6), ['case_seg.nii.gz'])
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path`` to: renamed onto ``path`` when the block succeeds, removed if it raises.

    It is a hidden, unused name in the same folder with the same full suffix (``.nii.gz``, ``.pdf``), so
    that writers which choose the format from the name choose the same one.
    """
    path = Path(path)
    suffix = "".join(path.suffixes)
    temp = path.with_name(f".{path.name[: len(path.name) - len(suffix)]}-{uuid.uuid4().hex[:12]}{suffix}")
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace the file ``path`` with ``text`` in one step."""
    with atomic_path(path) as temp:
        temp.write_text(text)
