"""Demo of ``sn.tl.image_features`` (SPADE) on spatial data with its tissue image."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import scneural as sn


def _save(axes, path: Path) -> None:
    fig = (axes[0] if isinstance(axes, list) else axes).figure
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"  wrote {path}")


def _has(name: str) -> bool:
    return sn.datasets.available().loc[name, "local_path"] is not None


def _top_genes(adata, n: int = 5) -> None:
    table = adata.uns["image_features"]["associations"]
    symbols = adata.var["gene_name"] if "gene_name" in adata.var else None
    for pc, rows in table.groupby("pc"):
        if pc > 3:
            break
        genes = rows.head(n)["gene"]
        names = [str(symbols.get(g, g)) if symbols is not None else g for g in genes]
        print(f"  image PC{pc}: top genes {', '.join(names)} (q {rows['qvalue'].iloc[0]:.1e})")


def demo_image_features(output: Path, max_epochs: int | None) -> None:
    """Image features: mouse olfactory bulb MOB1 -> MOB2, else the Visium crop, else skip."""
    epochs = 30 if max_epochs is None else max_epochs
    if _has("st_mouse_olfactory_bulb_mob1"):
        name, other = "st_mouse_olfactory_bulb_mob1", "st_mouse_olfactory_bulb_mob2"
    elif _has("visium_mouse_brain_crop"):
        name, other = "visium_mouse_brain_crop", None
    else:
        print("image_features: no spatial data set with an image found; skipped")
        return
    print(f"image_features on {name} (expression-supervised CNN, {epochs} epochs)")
    adata = sn.datasets.load(name)
    if "in_tissue" in adata.obs and adata.obs["in_tissue"].astype(int).sum() >= 10:
        adata = adata[adata.obs["in_tissue"].astype(int) == 1].copy()
    model = sn.tl.image_features(
        adata, backbone="expression", max_epochs=epochs, enable_progress_bar=False
    )
    ratio = adata.uns["image_features"]["variance_ratio"]
    print(f"  {adata.n_obs} spots, image PC1-3 explain {ratio[:3].round(3).tolist()}")
    sn.tl.image_gene_association(adata)
    _top_genes(adata)
    _save(sn.pl.image_features(adata, pcs=(1, 2, 3), show=False), output / f"image_{name}_pcs.png")
    _save(
        sn.pl.image_patches(adata, n=16, color_by_pc=1, show=False),
        output / f"image_{name}_patches.png",
    )
    _save(
        sn.pl.training_history(adata, "image_features", metrics=["loss"], show=False),
        output / f"image_{name}_history.png",
    )
    adata.write_h5ad(output / f"image_{name}.h5ad")
    print(f"  wrote {output / f'image_{name}.h5ad'}")
    if other is not None and _has(other):
        second = sn.datasets.load(other)
        second = second[second.obs["in_tissue"].astype(int) == 1].copy()
        sn.tl.image_features(second, model=model)
        print(f"  applied to {other} with model= ({second.n_obs} spots, no retraining)")
        _save(
            sn.pl.image_features(second, pcs=(1, 2, 3), show=False),
            output / f"image_{other}_pcs.png",
        )
