"""Demo of ``sn.tl.perturb`` (scGen): predict held-out IFN-beta responses of a cell type."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scanpy as sc

import scneural as sn


def _data() -> tuple[object, dict, str]:
    """Kang et al. IFN-beta PBMC when present, else synthetic data with a known response."""
    if sn.datasets.available().loc["kang_ifnb_sub", "local_path"] is not None:
        adata = sn.datasets.load("kang_ifnb_sub")
        keys = {
            "condition_key": "stim",
            "control": "CTRL",
            "perturbed": "STIM",
            "cell_type_key": "seurat_annotations",
        }
        return adata, keys, "CD14 Mono"
    adata = sn.datasets.synthetic_perturbation(n_obs=1200, n_vars=500, seed=0)
    keys = {
        "condition_key": "condition",
        "control": "control",
        "perturbed": "stimulated",
        "cell_type_key": "cell_type",
    }
    return adata, keys, "t0"


def demo_perturb(output: Path, max_epochs: int | None) -> None:
    """Perturb: hold out a type's stimulated cells, predict them, plot real vs predicted."""
    from ._demo import _save

    adata, keys, target = _data()
    name = "kang_ifnb_sub" if keys["condition_key"] == "stim" else "synthetic"
    print(f"perturb on {name}, predicting {target}")
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=min(2000, adata.n_vars), flavor="seurat")
    adata = adata[:, adata.var["highly_variable"]].copy()
    condition, types = adata.obs[keys["condition_key"]], adata.obs[keys["cell_type_key"]]
    held = ((types == target) & (condition == keys["perturbed"])).to_numpy()
    train = adata[~held].copy()
    pred = sn.tl.perturb(
        train, predict=target, max_epochs=max_epochs or 30, enable_progress_bar=False, **keys
    )
    real = adata[held]
    control = train[((types[~held] == target) & (condition[~held] == keys["control"])).to_numpy()]
    de = sn.metrics.top_de_genes(
        adata[(types == target).to_numpy()],
        keys["condition_key"],
        keys["perturbed"],
        keys["control"],
        n_genes=100,
    )
    r2 = sn.metrics.perturbation_r2(real, pred, de_genes=de)
    r2_control = sn.metrics.perturbation_r2(real, control, de_genes=de)
    print(
        f"  R² of means, all genes / top-100 DE: predicted {r2['r2_mean_all']:.3f} / "
        f"{r2['r2_mean_de']:.3f}; control unchanged {r2_control['r2_mean_all']:.3f} / "
        f"{r2_control['r2_mean_de']:.3f}"
    )
    both = sc.concat([real, pred])
    _save(
        sn.pl.reg_mean(
            both,
            condition_key=keys["condition_key"],
            x=keys["perturbed"],
            top_genes=de,
            gene_list=de[:5],
            show=False,
        ),
        output / f"perturb_{name}_reg_mean.png",
    )
    _save(
        sn.pl.reg_var(both, condition_key=keys["condition_key"], x=keys["perturbed"], show=False),
        output / f"perturb_{name}_reg_var.png",
    )
    _save(
        sn.pl.training_history(train, "perturb", metrics=["loss"], show=False),
        output / f"perturb_{name}_history.png",
    )
    latent = sc.concat([train, pred], label="_source", keys=["real", "predicted"])
    latent.obsm["X_perturb"] = np.vstack([train.obsm["X_perturb"], pred.obsm["X_perturb"]])
    sc.pp.neighbors(latent, use_rep="X_perturb")
    sc.tl.umap(latent)
    _save(
        sc.pl.umap(latent, color=[keys["cell_type_key"], keys["condition_key"]], show=False)[0],
        output / f"perturb_{name}_umap.png",
    )
    pred.write_h5ad(output / f"perturb_{name}_predicted.h5ad")
    print(f"  wrote {output / f'perturb_{name}_predicted.h5ad'}")
