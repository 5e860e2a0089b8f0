"""Benchmark of ``sn.tl.image_features`` on the mouse olfactory bulb (legacy ST, MOB1/MOB2).

Fit on MOB1, apply to MOB2 with ``model=``; on MOB2, 5-fold cross-validated ridge R² of
the spots' top-10 log-normalised expression PCs from each feature set:

- ``expression``: the expression-supervised CNN (trained on MOB1's patches and expression);
- ``vgg16 (random init)``: SPADE's VGG16 with random weights (no ImageNet download here);
- ``colour/texture stats``: per-channel summary statistics and histograms, grey-level
  gradients and a grey-level co-occurrence matrix (as squidpy's summary/histogram/texture
  features), computed with numpy on the same patches.

Usage::

    PYTHONPATH=src python benchmarks/image_features.py [--seeds 0 1 2] [--max-epochs 60]

Every method sees the same 64 px patches (two spot spacings: the 100 µm spot and its
surroundings); the expression CNN takes them at 32 px, VGG16 at its 224 px.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import scanpy as sc
import torch
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import scneural as sn
from scneural.tl._image_patches import spot_image


def load_section(name: str):
    adata = sn.datasets.load(name)
    return adata[adata.obs["in_tissue"] == 1].copy()


def expression_pcs(adata, n_pcs: int = 10) -> np.ndarray:
    tmp = adata.copy()
    sc.pp.normalize_total(tmp, target_sum=1e4)
    sc.pp.log1p(tmp)
    sc.pp.pca(tmp, n_comps=n_pcs, random_state=0)
    return tmp.obsm["X_pca"]


def cv_r2(features: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """5-fold CV ridge R²: mean over the PCs, variance-weighted, and of PC1-PC3."""
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    folds = KFold(5, shuffle=True, random_state=0)
    predicted = cross_val_predict(model, features, target, cv=folds)
    raw = r2_score(target, predicted, multioutput="raw_values")
    return {
        "mean": float(raw.mean()),
        "weighted": float(r2_score(target, predicted, multioutput="variance_weighted")),
        "pc1": float(raw[0]),
        "pc2": float(raw[1]),
        "pc3": float(raw[2]),
    }


def _glcm_stats(gray: np.ndarray, levels: int = 8) -> list[float]:
    q = np.minimum((gray.astype(np.int64) * levels) // 256, levels - 1)
    out = []
    for a, b in ((q[:, :-1], q[:, 1:]), (q[:-1, :], q[1:, :])):
        counts = np.bincount((a * levels + b).ravel(), minlength=levels * levels)
        p = counts.reshape(levels, levels).astype(float)
        p = p + p.T
        p /= p.sum()
        i, j = np.indices(p.shape)
        mu_i, mu_j = (i * p).sum(), (j * p).sum()
        sd_i = np.sqrt(((i - mu_i) ** 2 * p).sum())
        sd_j = np.sqrt(((j - mu_j) ** 2 * p).sum())
        corr = ((i - mu_i) * (j - mu_j) * p).sum() / max(sd_i * sd_j, 1e-12)
        out += [
            ((i - j) ** 2 * p).sum(),  # contrast
            (np.abs(i - j) * p).sum(),  # dissimilarity
            (p / (1.0 + (i - j) ** 2)).sum(),  # homogeneity
            np.sqrt((p**2).sum()),  # energy
            corr,  # correlation
        ]
    return out


def colour_texture_features(adata, patch_size: int) -> np.ndarray:
    """Summary, histogram and texture statistics of each spot's patch (numpy)."""
    spots = spot_image(adata, patch_size=patch_size)
    rows = []
    for batch in spots.iter_batches(256):
        for patch in batch.astype(np.float64):
            pixels = patch.reshape(-1, 3)
            feats = list(pixels.mean(0)) + list(pixels.std(0))
            feats += list(np.quantile(pixels, [0.1, 0.25, 0.5, 0.75, 0.9], axis=0).ravel())
            for c in range(3):
                hist, _ = np.histogram(pixels[:, c], bins=16, range=(0, 256))
                feats += list(hist / pixels.shape[0])
            gray = patch @ np.array([0.299, 0.587, 0.114])
            gy, gx = np.gradient(gray)
            magnitude = np.hypot(gx, gy)
            feats += [magnitude.mean(), magnitude.std(), np.var(np.gradient(gx, axis=1))]
            feats += _glcm_stats(gray)
            rows.append(feats)
    return np.asarray(rows, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--patch-size", type=int, default=64, help="px, for every method")
    parser.add_argument("--expression-input-size", type=int, default=32)
    parser.add_argument("--vgg-input-size", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sc.settings.verbosity = 0

    mob1 = load_section("st_mouse_olfactory_bulb_mob1")
    mob2 = load_section("st_mouse_olfactory_bulb_mob2")
    target = expression_pcs(mob2)
    print(
        f"MOB1 {mob1.n_obs} spots, MOB2 {mob2.n_obs} spots (in tissue); patches "
        f"{args.patch_size} px; torch threads {args.threads}"
    )
    rows = []

    def record(name, features, seconds, pcs=None):
        scores = cv_r2(features, target)
        scores["pcs_weighted"] = cv_r2(pcs, target)["weighted"] if pcs is not None else np.nan
        rows.append({"name": name, "dims": features.shape[1], "seconds": seconds, **scores})
        print(f"  {name}: {scores}", flush=True)

    for seed in args.seeds:
        start = time.perf_counter()
        model = sn.tl.image_features(
            mob1,
            backbone="expression",
            patch_size=args.patch_size,
            input_size=args.expression_input_size,
            random_state=seed,
            max_epochs=args.max_epochs,
            enable_progress_bar=False,
        )
        sn.tl.image_features(mob2, model=model)
        record(
            f"expression CNN, seed {seed}",
            mob2.obsm["X_image_features"],
            time.perf_counter() - start,
            mob2.obsm["X_image_features_pca"],
        )

    start = time.perf_counter()
    model = sn.tl.image_features(
        mob1,
        backbone="vgg16",
        weights=None,
        patch_size=args.patch_size,
        input_size=args.vgg_input_size,
        random_state=0,
    )
    sn.tl.image_features(mob2, model=model)
    record(
        f"VGG16 random init ({args.vgg_input_size} px input)",
        mob2.obsm["X_image_features"],
        time.perf_counter() - start,
        mob2.obsm["X_image_features_pca"],
    )

    start = time.perf_counter()
    stats = colour_texture_features(mob2, args.patch_size)
    record("colour/texture statistics (numpy)", stats, time.perf_counter() - start)

    expr = [r for r in rows if r["name"].startswith("expression")]
    if len(expr) > 1:
        mean = {k: float(np.mean([r[k] for r in expr])) for k in expr[0] if k != "name"}
        rows.insert(len(expr), {**mean, "name": f"**expression CNN, mean of {len(expr)} seeds**"})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(
        "| features of MOB2 (fit on MOB1) | dims | R² mean of 10 PCs | R² variance-weighted | "
        "R² PC1 | R² PC2 | R² PC3 | R² var-weighted from the 10 image PCs | time (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        pcs = "-" if np.isnan(r["pcs_weighted"]) else f"{r['pcs_weighted']:.3f}"
        print(
            f"| {r['name']} | {int(r['dims'])} | {r['mean']:.3f} | {r['weighted']:.3f} | "
            f"{r['pc1']:.3f} | {r['pc2']:.3f} | {r['pc3']:.3f} | {pcs} | {r['seconds']:.0f} |"
        )
    print(f"\npeak RSS {peak:.0f} MiB; times include training on MOB1 and applying to MOB2")


if __name__ == "__main__":
    main()
