"""NIfTI voxels and geometry read with nibabel where SimpleITK loses or refuses them.

- ITK's NIfTI reader (niftilib's `nifti_read_buffer`) replaces every NaN and +-inf voxel of a float image
  with 0.0 and says nothing. For a float NIfTI-1 file the voxels are therefore taken from nibabel, which
  keeps them, while the geometry stays ITK's own (`ImageFileReader.ReadImageInformation`).
- SimpleITK 2.5 has no NIfTI-2 reader ("Unable to determine ImageIO reader"). A NIfTI-2 file is read
  whole with nibabel; its geometry comes from nibabel's affine (sform if its code is set, else qform, else
  the pixdim diagonal) converted from NIfTI's RAS to ITK's LPS frame as ITK does for NIfTI-1: spacing =
  column norms, direction = normalised columns with x and y negated, origin = translation with x and y
  negated.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from climb_cli.errors import ItemError
from climb_cli.lazy import lazy

if TYPE_CHECKING:  # the real modules for the type checker; at run time each loads on first use
    import nibabel as nib
    import SimpleITK as sitk
else:
    nib = lazy("nibabel")
    sitk = lazy("SimpleITK")

_SUFFIXES = (".nii", ".nii.gz", ".hdr")
_LPS = np.diag([-1.0, -1.0, 1.0])


def load(path: Path) -> Any | None:
    """nibabel's NIfTI-1/NIfTI-2 image (header only, voxels not read yet) or None for anything else."""
    if not path.name.lower().endswith(_SUFFIXES):
        return None
    try:
        img = nib.load(str(path))
    except Exception:
        return None  # not a NIfTI nibabel knows: SimpleITK reports the problem
    return img if isinstance(img, nib.Nifti1Pair | nib.Nifti2Pair) else None  # *Image are subclasses


def is_nifti2(img: Any) -> bool:
    return isinstance(img.header, nib.Nifti2Header)  # Nifti2Image derives from Nifti1Image, not Nifti2Pair


def is_float(img: Any) -> bool:
    return img.header.get_data_dtype().kind == "f"


def _voxels(img: Any, shape_xyz: tuple[int, ...], dtype: np.dtype | None = None) -> np.ndarray:
    """The voxels in ITK's array order (last NIfTI axis first), scaled by scl_slope/scl_inter."""
    data = np.asanyarray(img.dataobj)
    if int(np.prod(data.shape)) != int(np.prod(shape_xyz)):
        raise ItemError(f"nibabel reads {data.shape} voxels where the header describes {shape_xyz}")
    data = data.reshape(shape_xyz, order="F")  # drops or adds trailing 1-long axes as ITK does
    return np.ascontiguousarray(data.transpose(tuple(range(data.ndim))[::-1]), dtype=dtype)


def with_itk_geometry(path: Path, img: Any) -> sitk.Image:
    """A float NIfTI-1 image: nibabel's voxels (NaN/inf kept) with ITK's geometry and pixel type."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    size = tuple(int(v) for v in reader.GetSize())
    dtype = sitk.GetArrayViewFromImage(sitk.Image([1] * len(size), reader.GetPixelID())).dtype
    out = sitk.GetImageFromArray(_voxels(img, size, dtype))
    out.SetSpacing(reader.GetSpacing())
    out.SetOrigin(reader.GetOrigin())
    out.SetDirection(reader.GetDirection())
    return out


def read_nifti2(img: Any, name: str) -> sitk.Image:
    """A NIfTI-2 image read by nibabel, as a SimpleITK image in ITK's LPS geometry (3-D or 4-D)."""
    shape = tuple(int(v) for v in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (3, 4):
        raise ItemError(f"{name}: a {len(shape)}-D NIfTI-2 image ({'x'.join(map(str, shape))}), not a volume")
    affine = np.asarray(img.affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if not np.all(spacing > 0):
        raise ItemError(f"{name}: NIfTI-2 affine has a zero-length axis")
    rotation = affine[:3, :3] / spacing
    if not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-4):
        raise ItemError(f"{name}: NIfTI-2 affine is sheared, not a rotation with spacings")
    data = _voxels(img, shape)  # (z, y, x) or (t, z, y, x)
    direction = (_LPS @ rotation).ravel().tolist()
    origin = (_LPS @ affine[:3, 3]).tolist()

    def volume(arr: np.ndarray) -> sitk.Image:
        out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
        out.SetSpacing(spacing.tolist())
        out.SetOrigin(origin)
        out.SetDirection(direction)
        return out

    if len(shape) == 3:
        return volume(data)
    zooms = img.header.get_zooms()
    step = float(zooms[3]) if len(zooms) > 3 and zooms[3] > 0 else 1.0
    return sitk.JoinSeries([volume(data[t]) for t in range(data.shape[0])], 0.0, step)
