"""Demo of ``sn.tl.deep_cluster``: worm neurons when the data is present, else synthetic."""

from __future__ import annotations

from pathlib import Path

import scanpy as sc

import scneural as sn


def demo_deep_cluster(output: Path, max_epochs: int | None) -> None:
    """Cluster worm_neuron_cell (10 types) with a short schedule, or a synthetic set."""
    from ._demo import _has, _save

    if _has("worm_neuron_cell"):
        name, labels_key = "worm_neuron_cell", "Y"
        adata = sn.datasets.load(name)
    else:
        name, labels_key = "synthetic", "group"
        adata = sn.datasets.synthetic_counts(n_obs=2000, n_vars=1000, n_groups=6, seed=0)
    n_clusters = adata.obs[labels_key].nunique()
    print(f"deep_cluster on {name} ({adata.n_obs} cells, k={n_clusters})")
    sn.tl.deep_cluster(
        adata,
        n_clusters,
        labels_key=labels_key,
        pretrain_epochs=40,  # a short schedule for the demo; the default trains ~2,500 steps
        max_epochs=max_epochs or 30,
        enable_progress_bar=False,
    )
    uns = adata.uns["deep_cluster"]
    scores = uns["metrics"]
    print(
        f"  ARI {scores['ari']:.3f}, NMI {scores['nmi']:.3f}, accuracy {scores['accuracy']:.3f}; "
        f"{len(uns['label_change'])} target updates, converged {uns['converged']}"
    )
    sc.pp.neighbors(adata, use_rep="X_deep_cluster")
    sc.tl.umap(adata)
    _save(
        sc.pl.umap(adata, color=[labels_key, "deep_cluster"], show=False, wspace=0.3)[0],
        output / f"deep_cluster_{name}_umap.png",
    )
    _save(
        sn.pl.cluster_contingency(adata, "deep_cluster", labels_key, show=False),
        output / f"deep_cluster_{name}_contingency.png",
    )
    _save(
        sn.pl.training_history(adata, "deep_cluster", metrics=["loss"], show=False),
        output / f"deep_cluster_{name}_history.png",
    )
    adata.write_h5ad(output / f"deep_cluster_{name}.h5ad")
    print(f"  wrote {output / f'deep_cluster_{name}.h5ad'}")
