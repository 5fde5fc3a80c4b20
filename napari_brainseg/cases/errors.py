"""What can go wrong preparing a scanner study, and the optional packages that preparing needs."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..io import BratsInputError

CLINICAL_INSTALL = 'pip install "napari-brainseg[clinical]"'
"""The command that installs what preparing a scanner study needs (SimpleITK and the brain extractor)."""


class StudyInputError(BratsInputError):
    """Scanner files that cannot be prepared as a case; the message says what to do. Nothing was written."""


class ClinicalExtraMissing(RuntimeError):
    """An optional package of the ``clinical`` extra is not installed; the message names the install command."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` of the clinical extra, or raise :class:`ClinicalExtraMissing` naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ClinicalExtraMissing(
            f"{purpose} needs the optional package '{module.split('.')[0]}', which is not installed. "
            f"Install the clinical extra: {CLINICAL_INSTALL}"
        ) from None
