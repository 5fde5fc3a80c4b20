"""Voxel grids and world matrices between SimpleITK (LPS millimetres) and NIfTI/nibabel (RAS millimetres).

A 4 x 4 *world matrix* here maps a point of one image to the same anatomy in another, in RAS mm, as
NiftyReg's and nibabel's matrices do. SimpleITK's arrays are (z, y, x) and nibabel's (x, y, z).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""Flips x and y: the same point in LPS and RAS coordinates (its own inverse)."""


def nifti_affine(image: sitk.Image) -> np.ndarray:
    """The NIfTI (RAS) voxel-to-world affine of a SimpleITK image, voxel index in (x, y, z) order."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ affine


def to_nifti(image: sitk.Image, dtype: type | None = None) -> nib.Nifti1Image:
    """A SimpleITK image as a nibabel NIfTI image on the same grid (qform = sform, code 1)."""
    import SimpleITK as sitk

    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    if dtype is not None:
        data = data.astype(dtype)
    nifti = nib.Nifti1Image(np.ascontiguousarray(data), nifti_affine(image))
    nifti.set_qform(nifti.affine, 1)
    nifti.set_sform(nifti.affine, 1)
    nifti.header.set_xyzt_units("mm")
    return nifti


def from_nifti(nifti: nib.Nifti1Image, dtype: type = np.float32) -> sitk.Image:
    """A nibabel NIfTI image as a SimpleITK image on the same grid."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.asarray(nifti.dataobj, dtype=dtype).transpose(2, 1, 0).copy())
    affine = LPS_TO_RAS @ nifti.affine
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((affine[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(affine[:3, 3].tolist())
    return image


def world_matrix(transform: sitk.Transform) -> np.ndarray:
    """The RAS 4 x 4 matrix of an affine-like SimpleITK transform (fixed-image points to moving-image points)."""
    corners = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    mapped = np.array([transform.TransformPoint(p.tolist()) for p in corners])
    matrix = np.eye(4)
    matrix[:3, 3] = mapped[0]
    matrix[:3, :3] = (mapped[1:] - mapped[0]).T
    return LPS_TO_RAS @ matrix @ LPS_TO_RAS


def sitk_transform(matrix: np.ndarray) -> sitk.AffineTransform:
    """The SimpleITK transform of a RAS world matrix (inverse of :func:`world_matrix`)."""
    import SimpleITK as sitk

    lps = LPS_TO_RAS @ np.asarray(matrix, dtype=float) @ LPS_TO_RAS
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(lps[:3, :3].ravel().tolist())
    transform.SetTranslation(lps[:3, 3].tolist())
    return transform


def sample_nearest(
    volume: nib.Nifti1Image, shape: tuple[int, ...], affine: np.ndarray, to_volume_world: np.ndarray | None = None
) -> np.ndarray:
    """``volume``'s voxels (nearest neighbour, 0 outside) on the grid (``shape``, ``affine``).

    ``to_volume_world`` maps the grid's world points to the same anatomy in ``volume``'s world (RAS 4 x 4;
    identity when both lie in one world).
    """
    matrix = np.eye(4) if to_volume_world is None else np.asarray(to_volume_world, dtype=float)
    to_voxel = np.linalg.inv(volume.affine) @ matrix @ np.asarray(affine, dtype=float)
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    voxel = np.rint(to_voxel[:3, :3].astype(np.float32) @ grid + to_voxel[:3, 3:4]).astype(np.intp)
    inside = np.all((voxel >= 0) & (voxel < np.array(volume.shape[:3])[:, None]), axis=0)
    data = np.asarray(volume.dataobj)
    values = np.zeros(grid.shape[1], dtype=data.dtype)
    values[inside] = data[tuple(voxel[:, inside])]
    return values.reshape(shape)
