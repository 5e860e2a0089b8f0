"""The end-to-end demo behind ``make demo``: each tool on real data, results and figures saved."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc

import scneural as sn

from ._demo_deep_cluster import demo_deep_cluster
from ._demo_image import demo_image_features
from ._demo_perturb import demo_perturb

logger = logging.getLogger("scneural.demo")


def _save(fig_or_axes, path: Path) -> None:
    fig = fig_or_axes.figure if hasattr(fig_or_axes, "figure") else fig_or_axes
    if isinstance(fig_or_axes, list):
        fig = fig_or_axes[0].figure
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"  wrote {path}")


def _has(name: str) -> bool:
    return sn.datasets.available().loc[name, "local_path"] is not None


def demo_classify(output: Path, max_epochs: int | None) -> None:
    """Classify: pbmc3k (80/20 split) when the real data is present, and pbmc68k_reduced."""
    from sklearn.model_selection import train_test_split

    sets = [("pbmc68k_reduced", "bulk_labels")]
    if _has("pbmc3k_annotated"):
        sets.insert(0, ("pbmc3k_annotated", "seurat_annotations"))
    for name, labels_key in sets:
        print(f"classify on {name}")
        if name == "pbmc68k_reduced":
            adata = sn.datasets.pbmc68k_reduced_counts()
        else:
            adata = sn.datasets.load(name)
            adata = adata[adata.obs[labels_key].notna()].copy()
        adata.layers["counts"] = adata.X.copy()
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
        sc.pp.highly_variable_genes(adata, n_top_genes=2000, flavor="seurat")
        adata = adata[:, adata.var["highly_variable"]].copy()
        train_idx, test_idx = train_test_split(
            np.arange(adata.n_obs), test_size=0.2, stratify=adata.obs[labels_key], random_state=0
        )
        ref, query = adata[train_idx].copy(), adata[test_idx].copy()
        model = sn.tl.classify(ref, labels_key, max_epochs=max_epochs)
        sn.tl.classify(query, labels_key, model=model)
        scores = query.uns["classify"]["metrics"]
        print(f"  test accuracy {scores['accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f}")
        sc.pp.neighbors(ref, use_rep="X_classify")
        sc.tl.umap(ref)
        _save(
            sc.pl.umap(ref, color=[labels_key, "classify_confidence"], show=False, wspace=0.4)[0],
            output / f"classify_{name}_umap.png",
        )
        _save(
            sn.pl.confusion_matrix(query, labels_key, "classify_label", show=False),
            output / f"classify_{name}_confusion.png",
        )
        _save(
            sn.pl.training_history(ref, "classify", metrics=["loss", "accuracy"], show=False),
            output / f"classify_{name}_history.png",
        )
        query.write_h5ad(output / f"classify_{name}_query.h5ad")
        print(f"  wrote {output / f'classify_{name}_query.h5ad'}")


DEMOS: dict[str, Callable[[Path, int | None], None]] = {
    "classify": demo_classify,
    "deep_cluster": demo_deep_cluster,
    "perturb": demo_perturb,
    "image_features": demo_image_features,
}


def run_demo(
    output: Path, tools: Sequence[str] | None = None, max_epochs: int | None = None
) -> None:
    """Run the demos of ``tools`` (all by default), writing into ``output``."""
    output = Path(output)
    unknown = set(tools or []) - set(DEMOS)
    if unknown:
        raise ValueError(f"unknown demo tools {sorted(unknown)}; choose from {sorted(DEMOS)}")
    output.mkdir(parents=True, exist_ok=True)
    sc.settings.verbosity = 1
    for name in tools or DEMOS:
        DEMOS[name](output, max_epochs)
    print(f"demo finished; outputs in {output.resolve()}")
