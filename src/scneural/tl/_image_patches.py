"""Tissue-image patches at spatial spots (scanpy/squidpy spatial layout).

``adata.obsm["spatial"]`` holds spot centres in full-resolution pixels (x, y);
``adata.uns["spatial"][library_id]["images"][img_key]`` holds the image and
``["scalefactors"][f"tissue_{img_key}_scalef"]`` maps full-resolution pixels onto it.
Patches are square, centred on the spot, and padded (not dropped) at the image border.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.spatial import cKDTree

from scneural._utils import counted
from scneural.models.image._extractor import to_rgb_uint8

#: smallest patch a CNN backbone can take (five 2x poolings of VGG16 / ResNet50; SPADE)
MIN_PATCH_SIZE = 32

#: value of the pixels added around the image for spots near the border (slide background)
PAD_VALUE = 255


@dataclass
class SpotImage:
    """The image of one library and where its spots fall on it.

    Attributes
    ----------
    image
        ``(height, width, 3)`` uint8 RGB image.
    centers
        ``(n_spots, 2)`` spot centres in the image's pixels, as ``(x, y)``.
    patch_size
        Side of the square patch in image pixels.
    library_id, img_key, scale_factor
        Where the image came from and the factor applied to ``obsm["spatial"]``.
    """

    image: np.ndarray
    centers: np.ndarray
    patch_size: int
    library_id: str
    img_key: str
    scale_factor: float

    @property
    def n_spots(self) -> int:
        """Number of spots (patches)."""
        return int(self.centers.shape[0])

    def corners(self) -> np.ndarray:
        """Top-left pixel ``(x0, y0)`` of every patch (may be negative near the border)."""
        return np.floor(self.centers - self.patch_size / 2.0 + 0.5).astype(np.int64)

    def patch(self, i: int) -> np.ndarray:
        """The ``(patch_size, patch_size, 3)`` uint8 patch of spot ``i``."""
        return self.patches(np.array([i]))[0]

    def patches(self, indices: np.ndarray) -> np.ndarray:
        """Patches of the spots ``indices`` as ``(n, patch_size, patch_size, 3)`` uint8."""
        size = self.patch_size
        height, width = self.image.shape[:2]
        out = np.full((len(indices), size, size, 3), PAD_VALUE, dtype=np.uint8)
        corners = self.corners()[indices]
        for k, (x0, y0) in enumerate(corners):
            xs, ys = max(x0, 0), max(y0, 0)
            xe, ye = min(x0 + size, width), min(y0 + size, height)
            if xe > xs and ye > ys:
                out[k, ys - y0 : ye - y0, xs - x0 : xe - x0] = self.image[ys:ye, xs:xe]
        return out

    def iter_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Patches of all spots in order, ``batch_size`` at a time (never all in memory)."""
        for start in range(0, self.n_spots, batch_size):
            yield self.patches(np.arange(start, min(start + batch_size, self.n_spots)))


def resolve_library(adata: AnnData, library_id: str | None) -> str:
    """The library of ``uns["spatial"]`` to use, with clear errors when it is ambiguous."""
    spatial = adata.uns.get("spatial")
    if spatial is None or not hasattr(spatial, "keys") or len(spatial) == 0:
        raise KeyError(
            "adata.uns['spatial'] is missing or empty; image_features needs the scanpy spatial "
            "layout: uns['spatial'][library_id]['images'][img_key] and ['scalefactors'] "
            "(e.g. from sc.read_visium or squidpy.read)"
        )
    libraries = list(spatial.keys())
    if library_id is None:
        if len(libraries) > 1:
            raise ValueError(
                f"adata.uns['spatial'] holds several libraries {libraries}; pass library_id= "
                "with the one whose spots are in adata"
            )
        return str(libraries[0])
    if library_id not in spatial:
        raise KeyError(f"library_id={library_id!r} is not in adata.uns['spatial']: {libraries}")
    return str(library_id)


def _check_spots_of_library(adata: AnnData, library: str) -> None:
    """With several libraries, refuse spots that an obs column assigns to another one
    (squidpy's ``library_key``, e.g. ``obs["library_id"]`` from ``sc.concat(label=...)``)."""
    libraries = {str(k) for k in adata.uns["spatial"].keys()}
    if len(libraries) < 2:
        return
    for column in adata.obs.columns:
        values = adata.obs[column]
        if not (isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object):
            continue
        found = set(values.dropna().astype(str).unique())
        if len(found) < 2 or not found <= libraries:
            continue
        other = values.astype(str).to_numpy() != library
        if other.any():
            raise ValueError(
                f"{counted(int(other.sum()), 'spot belongs', 'spots belong')} to other "
                f"libraries than {library!r} (obs[{column!r}]: {sorted(found)}); their "
                f"patches would be cut from {library!r}'s image: run image_features on "
                f"adata[adata.obs[{column!r}] == {library!r}].copy() for each library"
            )


def _scale_factor(scalefactors: Any, img_key: str) -> float:
    for name in (f"tissue_{img_key}_scalef", f"{img_key}_scalef"):
        if name in scalefactors:
            return float(scalefactors[name])
    if img_key in ("fullres", "full", "image"):
        return 1.0
    raise KeyError(
        f"uns['spatial'][library_id]['scalefactors'] has no 'tissue_{img_key}_scalef' "
        f"(found {list(scalefactors)}); add the factor that maps obsm['spatial'] onto the "
        f"{img_key!r} image (1.0 if the coordinates are already in its pixels)"
    )


def default_patch_size(scalefactors: Any, centers: np.ndarray, scale: float) -> float:
    """Patch side in image pixels: the spot diameter, else the nearest-neighbour spacing."""
    if "spot_diameter_fullres" in scalefactors:
        diameter = float(scalefactors["spot_diameter_fullres"]) * scale
        if diameter >= MIN_PATCH_SIZE - 0.5:
            return diameter
    if "spot_nn_distance_px" in scalefactors:
        return float(scalefactors["spot_nn_distance_px"]) * scale
    if centers.shape[0] < 2:
        raise ValueError("cannot infer patch_size from a single spot; pass patch_size=")
    distances, _ = cKDTree(centers).query(centers, k=2)
    spacing = distances[:, 1]
    spacing = spacing[spacing > 0]
    if spacing.size == 0:
        raise ValueError("all spots share one position; pass patch_size=")
    return float(np.median(spacing))


def spot_image(
    adata: AnnData,
    *,
    library_id: str | None = None,
    img_key: str = "hires",
    patch_size: int | None = None,
    spatial_key: str = "spatial",
) -> SpotImage:
    """Validate the spatial layout of ``adata`` and return its image with spot centres.

    Raises clear errors for a missing ``uns["spatial"]``, an ambiguous or unknown library,
    a missing image or scale factor, spots outside the image and a patch under
    :data:`MIN_PATCH_SIZE` pixels.
    """
    if spatial_key not in adata.obsm:
        raise KeyError(
            f"adata.obsm[{spatial_key!r}] is missing; it must hold the spot centres (x, y) in "
            "full-resolution pixels"
        )
    library = resolve_library(adata, library_id)
    _check_spots_of_library(adata, library)
    entry = adata.uns["spatial"][library]
    images = entry.get("images", {})
    if img_key not in images:
        raise KeyError(
            f"img_key={img_key!r} is not in adata.uns['spatial'][{library!r}]['images'] "
            f"(available: {list(images)}); pass one of those"
        )
    image = to_rgb_uint8(images[img_key], f"uns['spatial'][{library!r}]['images'][{img_key!r}]")
    scalefactors = entry.get("scalefactors", {})
    scale = _scale_factor(scalefactors, img_key)
    coords = adata.obsm[spatial_key]
    if isinstance(coords, pd.DataFrame):  # columns beyond x, y may hold anything
        coords = coords.iloc[:, :2]
    try:
        coords = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"adata.obsm[{spatial_key!r}] must hold numbers: the spot centres (x, y) in "
            f"full-resolution pixels ({error})"
        ) from None
    if coords.ndim != 2 or coords.shape[1] < 2:
        raise ValueError(f"adata.obsm[{spatial_key!r}] must have two columns (x, y)")
    if not np.all(np.isfinite(coords[:, :2])):
        raise ValueError(f"adata.obsm[{spatial_key!r}] holds NaN or infinite coordinates")
    centers = coords[:, :2] * scale
    height, width = image.shape[:2]
    outside = (
        (centers[:, 0] < 0)
        | (centers[:, 0] >= width)
        | (centers[:, 1] < 0)
        | (centers[:, 1] >= height)
    )
    if outside.any():
        names = list(adata.obs_names[outside][:5])
        raise ValueError(
            f"{counted(int(outside.sum()), 'spot lies', 'spots lie')} outside the "
            f"{img_key!r} image ({width}x{height} px; e.g. {names}) after scaling "
            f"obsm[{spatial_key!r}] by {scale:g}; check img_key, library_id and the scale "
            "factor, or subset adata to the imaged spots"
        )
    if patch_size is None:
        size = default_patch_size(scalefactors, centers, scale)
        if size < MIN_PATCH_SIZE - 0.5:
            raise ValueError(
                f"the spots of the {img_key!r} image are only {size:.1f} px wide/apart, under "
                f"the {MIN_PATCH_SIZE} px a CNN backbone needs; use a higher-resolution image "
                f"(img_key=) or pass patch_size>={MIN_PATCH_SIZE} to take more context"
            )
        patch_size = round(size)
    elif isinstance(patch_size, bool) or not isinstance(patch_size, int | np.integer):
        raise ValueError(f"patch_size must be an integer number of pixels, got {patch_size!r}")
    if patch_size < MIN_PATCH_SIZE:
        raise ValueError(
            f"patch_size={patch_size} is under the {MIN_PATCH_SIZE} px a CNN backbone needs "
            f"(five 2x poolings); pass patch_size>={MIN_PATCH_SIZE}"
        )
    return SpotImage(
        image=image,
        centers=centers,
        patch_size=int(patch_size),
        library_id=library,
        img_key=img_key,
        scale_factor=scale,
    )
