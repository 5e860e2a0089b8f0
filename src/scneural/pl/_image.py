"""Image-feature plots: image PCs over the H&E image and sample patches at spots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from anndata import AnnData
from matplotlib.colors import TwoSlopeNorm

from scneural._docs import doc_params

from ._utils import finish, get_uns, panel_axes


def _spots(
    adata: AnnData,
    params: dict,
    library_id: str | None,
    img_key: str | None,
    patch_size: int | None = None,
):
    """The spots on the image the features were computed on (or the one asked for).

    On the same image the stored patch size is reused, so a result computed with an
    explicit ``patch_size`` (e.g. on a low-resolution image) plots without recomputing it;
    on another image it is in the wrong pixels, so the default is computed there.
    """
    from scneural.tl._image_patches import spot_image

    library_id = library_id or params.get("library_id")
    img_key = img_key or params.get("img_key", "hires")
    same_image = library_id == params.get("library_id") and img_key == params.get("img_key")
    return spot_image(
        adata,
        library_id=library_id,
        img_key=img_key,
        patch_size=patch_size or (params.get("patch_size") if same_image else None),
        spatial_key=params.get("spatial_key", "spatial"),
    )


def image_features(
    adata: AnnData,
    pcs: int | Sequence[int] = (1, 2),
    *,
    key: str = "image_features",
    library_id: str | None = None,
    img_key: str | None = None,
    cmap: str = "RdBu_r",
    spot_size: float | None = None,
    alpha: float = 0.9,
    img_alpha: float = 1.0,
    crop: bool = True,
    ncols: int = 3,
    ax: Any = None,
    show: bool | None = None,
) -> Any:
    """Image PCs as coloured spots over the tissue image, one panel per PC (as SPADE's maps).

    Parameters
    ----------
    adata
        AnnData with ``obsm[f"X_{key}_pca"]`` from :func:`scneural.tl.image_features`.
    pcs
        1-based numbers of the PCs to plot.
    key
        The tool's ``key_added``.
    library_id, img_key
        Image to draw under the spots; default the one the features were computed on.
    cmap
        Diverging colour map, centred on 0.
    spot_size
        Marker size (points²); default from the patch size.
    alpha, img_alpha
        Opacity of the spots and of the image.
    crop
        Zoom to the spots (with a margin of one patch).
    ncols
        Panels per row.
    ax
        One Axes per PC (one Axes for a single PC); new figure by default.
    show
        Show the figure (``None``: scanpy's ``sc.settings.autoshow``); ``False``
        returns the list of Axes.

    Returns
    -------
    The list of Axes when the figure is not shown (see ``show``), else ``None``.
    """
    pca_key = f"X_{key}_pca"
    params = get_uns(adata, key, "image_features").get("params", {})
    if pca_key not in adata.obsm:
        raise KeyError(f"adata.obsm has no {pca_key!r}; run sn.tl.image_features first")
    values = np.asarray(adata.obsm[pca_key])
    pcs = [pcs] if isinstance(pcs, int | np.integer) else list(pcs)
    bad = [p for p in pcs if not 1 <= int(p) <= values.shape[1]]
    if bad or not pcs:
        raise ValueError(f"pcs={pcs} must be between 1 and {values.shape[1]} (1-based)")
    spots = _spots(adata, params, library_id, img_key)
    axes = panel_axes(len(pcs), ax, ncols=ncols, size=(4.5, 4.5))
    x, y = spots.centers[:, 0], spots.centers[:, 1]
    margin = spots.patch_size
    for panel, pc in zip(axes, pcs):
        v = values[:, int(pc) - 1]
        limit = float(np.quantile(np.abs(v), 0.99)) or 1.0
        panel.imshow(spots.image, alpha=img_alpha)
        if crop:
            panel.set_xlim(x.min() - margin, x.max() + margin)
            panel.set_ylim(y.max() + margin, y.min() - margin)
        size = spot_size
        if size is None:
            # marker diameter of 0.8 patch, from data units to points
            width_pt = panel.get_window_extent().width * 72.0 / panel.figure.dpi
            span = abs(np.diff(panel.get_xlim())[0])
            size = max(1.0, (0.8 * spots.patch_size * width_pt / max(span, 1.0)) ** 2)
        points = panel.scatter(
            x,
            y,
            c=v,
            s=size,
            cmap=cmap,
            norm=TwoSlopeNorm(0.0, -limit, limit),
            alpha=alpha,
            linewidths=0,
        )
        panel.set_title(f"image PC{int(pc)}")
        panel.set_xticks([])
        panel.set_yticks([])
        panel.figure.colorbar(points, ax=panel, shrink=0.7)
    return finish(list(axes), show)


@doc_params()
def image_patches(
    adata: AnnData,
    n: int = 16,
    *,
    key: str = "image_features",
    library_id: str | None = None,
    img_key: str | None = None,
    patch_size: int | None = None,
    spots: Sequence[str] | None = None,
    color_by_pc: int | None = None,
    random_state: int = 0,
    ncols: int = 8,
    ax: Any = None,
    show: bool | None = None,
) -> Any:
    """A grid of the patches cut at sample spots, to check the crop.

    Parameters
    ----------
    adata
        AnnData in the scanpy spatial layout. When ``uns[key]`` exists, its library, image
        and patch size are used, so the patches are exactly those the CNN saw.
    n
        Number of spots drawn at random (ignored when ``spots`` is given).
    key
        The ``key_added`` of :func:`scneural.tl.image_features` (optional).
    library_id, img_key, patch_size
        Override the image and patch size.
    spots
        Names of the spots to show.
    color_by_pc
        Order the patches by this image PC (1-based) and show its value in the titles.
    random_state
        Seed of the random choice of spots.
    ncols
        Patches per row.
    ax
        One Axes per patch; new figure by default.
    {show}

    Returns
    -------
    The list of Axes when the figure is not shown (see ``show``), else ``None``.
    """
    params = dict(adata.uns[key].get("params", {})) if key in adata.uns else {}
    image = _spots(adata, params, library_id, img_key, patch_size)
    if spots is not None:
        spots = [spots] if isinstance(spots, str) else list(spots)  # one name, not its letters
        missing = [s for s in spots if s not in adata.obs_names]
        if missing:
            raise KeyError(f"spots {missing[:5]} are not in adata.obs_names")
        index = adata.obs_names.get_indexer(list(spots))
    else:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        rng = np.random.default_rng(random_state)
        index = np.sort(rng.choice(adata.n_obs, size=min(int(n), adata.n_obs), replace=False))
    values = None
    if color_by_pc is not None:
        pca_key = f"X_{key}_pca"
        if pca_key not in adata.obsm:
            raise KeyError(f"adata.obsm has no {pca_key!r}; run sn.tl.image_features first")
        scores = np.asarray(adata.obsm[pca_key])
        if (
            isinstance(color_by_pc, bool)
            or not isinstance(color_by_pc, int | np.integer)
            or not 1 <= color_by_pc <= scores.shape[1]
        ):
            raise ValueError(
                f"color_by_pc={color_by_pc!r} must be a PC number between 1 and "
                f"{scores.shape[1]} (1-based)"
            )
        values = scores[:, int(color_by_pc) - 1]
        index = index[np.argsort(values[index])]
    patches = image.patches(index)
    axes = panel_axes(len(index), ax, ncols=ncols, size=(1.6, 1.6))
    for panel, i, patch in zip(axes, index, patches):
        panel.imshow(patch)
        title = str(adata.obs_names[i])
        if values is not None:
            title = f"PC{color_by_pc} {values[i]:.2f}"
        panel.set_title(title, fontsize=6)
        panel.set_xticks([])
        panel.set_yticks([])
    return finish(list(axes), show)
