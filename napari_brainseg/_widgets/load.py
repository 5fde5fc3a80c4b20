"""Load case: open a BraTS case folder, or pick its four modality files one by one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import Container, FileEdit, PushButton

from ..io import (
    MODALITIES,
    MODALITY_TITLES,
    BratsInputError,
    CaseFiles,
    case_files_from_paths,
    find_case,
    load_case,
    parse_brats_name,
)
from ..layers import case_layers
from . import Status, add_layers

if TYPE_CHECKING:
    import napari

NIFTI_FILTER = "NIfTI (*.nii *.nii.gz)"


class LoadWidget(Container):
    """Pick a case folder (fills in the files it found) or the files one by one, then load them."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.folder = FileEdit(label="Case folder", mode="d", nullable=True)
        self.files = {
            m: FileEdit(label=MODALITY_TITLES[m], mode="r", filter=NIFTI_FILTER, nullable=True) for m in MODALITIES
        }
        self.seg = FileEdit(label="Labels (optional)", mode="r", filter=NIFTI_FILTER, nullable=True)
        self.load_button = PushButton(text="Load case")
        self.status = Status()
        self.folder.changed.connect(self.fill_from_folder)
        self.load_button.clicked.connect(self.load)
        self.extend([self.folder, *self.files.values(), self.seg, self.load_button, self.status])

    def fill_from_folder(self) -> CaseFiles | None:
        """Find the case in the chosen folder and fill in which file is which modality."""
        folder = self.folder.value
        if folder is None:
            return None
        try:
            files = find_case(folder)
        except BratsInputError as err:
            self.status.error(err)
            return None
        for modality, edit in self.files.items():
            edit.value = files.images[modality]
        self.seg.value = files.seg
        self.status.info(f"Found case {files.case_id} ({files.naming} names). Press Load case.")
        return files

    def chosen_files(self) -> CaseFiles:
        """The case made of the files now in the form (checks that all four modalities are there)."""
        images = {m: edit.value for m, edit in self.files.items()}
        parsed = parse_brats_name(images["flair"]) if images["flair"] else None
        return case_files_from_paths(
            {m: p for m, p in images.items() if p is not None},
            self.seg.value,
            case_id=parsed[0] if parsed else None,
            naming=parsed[2] if parsed else "brats2018",
        )

    def load(self) -> None:
        """Load the chosen files and add the case's layers to the viewer."""
        try:
            case = load_case(self.chosen_files())
        except BratsInputError as err:
            self.status.error(err)
            return
        add_layers(self._viewer, case_layers(case))
        sources = [f"{MODALITY_TITLES[m]} \u2190 {p.name}" for m, p in case.files.images.items()]
        if case.files.seg is not None:
            sources.append(f"labels \u2190 {case.files.seg.name}")
        self.status.info(f"Loaded {case.case_id}: " + "; ".join(sources))
