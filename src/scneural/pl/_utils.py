"""Plot plumbing shared by every ``sn.pl`` function: axes creation and showing."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
from anndata import AnnData


def get_axes(ax: Any = None, figsize: tuple[float, float] = (5.0, 4.0)) -> Any:
    """The given axes, or a new figure's."""
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize)
    return ax


def finish(axes: Any, show: bool | None) -> Any:
    """Show the figure (scanpy's ``settings.autoshow`` when ``show=None``) or return the axes."""
    if show is None:
        import scanpy as sc

        show = sc.settings.autoshow
    if show:
        plt.show()
        return None
    return axes


def get_uns(adata: AnnData, key: str, tool: str) -> dict:
    """The ``uns[key]`` results of ``tool``, with an error saying how to create them."""
    if key not in adata.uns:
        raise KeyError(
            f"adata.uns has no {key!r}; run sn.tl.{tool}(adata, key_added={key!r}) first"
        )
    return adata.uns[key]
