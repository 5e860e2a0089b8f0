"""DEC-phase variants of ``sn.tl.deep_cluster`` from the *same* pretrained models.

``benchmarks/deep_cluster.py`` runs the tool end to end, so a difference between two
settings of the DEC phase mixes in the spread of pretraining. This script pretrains once
per (data set, seed) exactly as the tool does (``sn.tl.deep_cluster(adata, k,
max_epochs=0, random_state=seed)``: HVGs, pretraining, k-means), saves the model, and then
runs the DEC phase of each variant from that saved model, once per DEC seed (the seed of
the DEC phase's minibatches and noise). It records the ARI against ``obs["Y"]`` of the
k-means start, after every DEC epoch and at the end, and the fraction of labels changed at
each target update.

Usage::

    PYTHONPATH=src python benchmarks/deep_cluster_same_start.py \\
        --datasets pbmc_10x_scdeepcluster_top2000 --seeds 0 1 --dec-seeds 0 1 \\
        --variants '{"default": {}, "update every 5 epochs": {"update_epochs": 5}}' \\
        --model-dir /tmp/dc_models --results /tmp/dc_same_start.jsonl
    python benchmarks/deep_cluster_same_start.py --table --results /tmp/dc_same_start.jsonl
    PYTHONPATH=src python benchmarks/deep_cluster_same_start.py --starts --model-dir /tmp/dc_models

A variant is keyword arguments of :meth:`~scneural.models.DeepCluster.train_clusters`
(``max_epochs`` defaults to the tool's 100), plus ``update_epochs``: the target's refresh
interval in epochs, turned into steps for each data set, and ``true_type_means``: start
from centres at the latent means of the labelled types instead of k-means, as
``sn.tl.deep_cluster(init_key=...)`` does with a column of start clusters (a diagnostic;
its "k-means start" column is then the ARI of that start). With ``"tol": 0`` the DEC
phase runs all its epochs, and ``--table`` also prints where each ``tol`` in
``--simulate-tol`` would have stopped it: stopping only cuts the path short, so the ARI at
that point is the ARI that run would have ended with. ``--starts`` prints, for the same
pretrained models, the ARI of other partitions than the tool's k-means start (see
``start_alternatives``); ``--separability`` prints label-using diagnostics of the same
latent spaces (see ``separability``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _threads import limit_threads
from deep_cluster import DATASETS


def pretrained(name: str, seed: int, model_dir: Path):
    """The saved pretrained model of (data set, seed), pretrained and saved if missing;
    returns the model directory and the labels of its cells."""
    import scneural as sn

    adata = sn.datasets.load(name)
    truth = adata.obs["Y"].astype(str)
    path = model_dir / f"{name}_s{seed}"
    if not (path / "model.pt").exists():
        k = truth.nunique()
        model = sn.tl.deep_cluster(
            adata, k, max_epochs=0, random_state=seed, accelerator="cpu", enable_progress_bar=False
        )
        model.save(path, overwrite=True, save_anndata=True)
    return path, truth


def load_pretrained(path: Path, truth):
    """The saved pretrained model and the labels of its cells, in its cell order."""
    from scneural.models import DeepCluster

    model = DeepCluster.load(path, accelerator="cpu")
    return model, truth.reindex(model.adata.obs_names).to_numpy()


def true_type_codes(labels_true):
    """The labelled type of each cell as start-cluster codes (a diagnostic: it uses the
    labels)."""
    import pandas as pd

    return pd.Categorical(labels_true).codes


def run_variant(path: Path, truth, seed: int, dec_seed: int, kwargs: dict) -> dict:
    """One DEC phase from the saved model; ARI of the start, of each epoch and of the end."""
    import numpy as np
    import scvi
    from lightning.pytorch import Callback

    import scneural as sn

    model, labels_true = load_pretrained(path, truth)
    kwargs = dict(kwargs)
    max_epochs = kwargs.pop("max_epochs", 100)
    if "update_epochs" in kwargs:
        steps_per_epoch = int(np.ceil(model.adata.n_obs / kwargs.get("batch_size", 256)))
        kwargs["update_interval"] = kwargs.pop("update_epochs") * steps_per_epoch
    if kwargs.pop("true_type_means", False):  # what sn.tl.deep_cluster(init_key=) does
        start_labels = model.init_clusters(start_labels=true_type_codes(labels_true))
    else:
        start_labels = model.init_clusters(len(np.unique(labels_true)), random_state=seed)
    path_ari: list[float] = []

    class EpochARI(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            path_ari.append(sn.metrics.adjusted_rand_index(labels_true, model.predict()))
            pl_module.module.train()  # predict() left the module in eval mode (no noise)

    scvi.settings.seed = dec_seed
    cpu = time.process_time()
    model.train_clusters(
        max_epochs,
        initial_labels=start_labels,
        callbacks=[EpochARI()],
        enable_progress_bar=False,
        **kwargs,
    )
    return {
        "start_ari": sn.metrics.adjusted_rand_index(labels_true, start_labels),
        "ari": sn.metrics.adjusted_rand_index(labels_true, model.predict()),
        "epochs": len(path_ari),
        "cpu_seconds": time.process_time() - cpu,
        "epoch_ari": path_ari,
        "label_change": [float(c) for c in model.label_change_],
    }


def start_alternatives(path: Path, truth, seed: int) -> dict:
    """ARI of partitions of the same pretrained model other than the tool's k-means start:
    k-means on codes divided by their norm to the power beta (0: the tool's, 1: cosine),
    Ward linkage on the codes, and k-means on PCA of the decoded expression (log1p of the
    ZINB mean scaled to 10,000 per cell)."""
    import numpy as np
    import torch
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from sklearn.decomposition import PCA

    import scneural as sn

    model, labels_true = load_pretrained(path, truth)
    k = len(np.unique(labels_true))
    codes = model.get_latent_representation().astype(np.float64)

    def ari(x) -> float:
        labels = KMeans(k, n_init=20, random_state=seed).fit_predict(x)
        return sn.metrics.adjusted_rand_index(labels_true, labels)

    norm = np.linalg.norm(codes, axis=1, keepdims=True)
    row = {f"k-means, codes / norm^{beta:g}": ari(codes / norm**beta) for beta in (0, 0.5, 1)}
    ward = AgglomerativeClustering(k, linkage="ward").fit_predict(codes)
    row["Ward on the codes"] = sn.metrics.adjusted_rand_index(labels_true, ward)
    with torch.no_grad():
        z = torch.from_numpy(codes).float()
        mean = model.module.eval().generative(z, torch.ones(len(z), 1))["mean"]
    mean = mean.numpy().astype(np.float64)
    decoded = np.log1p(mean * 1e4 / mean.sum(axis=1, keepdims=True))
    row["k-means, PCA(32) of decoded expression"] = ari(
        PCA(32, random_state=seed).fit_transform(decoded)
    )
    return row


def separability(path: Path, truth, seed: int) -> dict:
    """How well the pretrained latent space separates the labelled types, and how much of
    that the tool's k-means start keeps. Uses the labels, so these are diagnostics, not
    methods: the ARI of assigning each cell to the nearest mean of the true types, of
    k-means started from those means, the 5-fold accuracy of a 15-NN classifier, and the
    ARI of spectral clustering on a 30-NN graph (sklearn) next to the tool's k-means."""
    import numpy as np
    from sklearn.cluster import KMeans, SpectralClustering
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    import scneural as sn
    from scneural.models.deep_cluster import kmeans_init, start_label_centres

    model, labels_true = load_pretrained(path, truth)
    types = np.unique(labels_true)
    latent = model.get_latent_representation()
    _, kmeans = kmeans_init(latent, len(types), random_state=seed)  # as init_clusters does
    codes = latent.astype(np.float64)
    type_means, nearest = start_label_centres(codes, true_type_codes(labels_true), len(types))
    started = KMeans(len(types), init=type_means, n_init=1).fit_predict(codes)
    spectral = SpectralClustering(
        len(types), affinity="nearest_neighbors", n_neighbors=30, random_state=seed, n_init=20
    ).fit_predict(codes)
    knn = cross_val_score(KNeighborsClassifier(15), codes, labels_true, cv=5).mean()
    return {
        "k-means (the tool's start)": sn.metrics.adjusted_rand_index(labels_true, kmeans),
        "spectral, 30-NN graph": sn.metrics.adjusted_rand_index(labels_true, spectral),
        "nearest true-type mean": sn.metrics.adjusted_rand_index(labels_true, nearest),
        "k-means from the true-type means": sn.metrics.adjusted_rand_index(labels_true, started),
        "15-NN accuracy (5-fold)": knn,
    }


def stopped_ari(row: dict, tol: float) -> float:
    """ARI at which a run with this ``tol`` would have stopped, for a run with the target
    refreshed every epoch: the DEC schedule stops at the first update (after the initial
    one) where fewer than ``tol`` of the labels changed, and update ``i`` comes after
    ``i`` epochs."""
    for update, change in enumerate(row["label_change"][1:], start=1):
        if change < tol:
            return row["epoch_ari"][update - 1]
    return row["ari"]


def table(rows: list[dict], tols: list[float]) -> None:
    import pandas as pd
    from _report import markdown

    frame = pd.DataFrame(rows)
    out = []
    for (name, variant), group in frame.groupby(["dataset", "variant"], sort=False):
        cells = {
            "data set": name,
            "variant": variant,
            "runs": len(group),
            "k-means start": group.groupby("seed")["start_ari"].first().mean(),
            "ARI mean": group["ari"].mean(),
            "ARI sd": group["ari"].std(),
            "per seed / DEC seed": " ".join(
                f"{s}/{d}:{a:.3f}"
                for s, d, a in zip(group["seed"], group["dec_seed"], group["ari"], strict=True)
            ),
            "DEC epochs": group["epochs"].mean(),
        }
        every_epoch = group["kwargs"].map(
            lambda kw: "update_interval" not in kw and "update_epochs" not in kw
        )
        if (group["tol"] == 0).all() and every_epoch.all():
            for tol in tols:
                cells[f"stop at tol {tol:g}"] = group.apply(stopped_ari, axis=1, tol=tol).mean()
        out.append(cells)
    print(markdown(pd.DataFrame(out)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--dec-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", default='{"default": {}}', help="JSON: name -> kwargs")
    parser.add_argument("--model-dir", default="benchmarks/results/dc_models")
    parser.add_argument("--results", default="benchmarks/results/deep_cluster_same_start.jsonl")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="store_true", help="print the table of --results")
    parser.add_argument(
        "--starts", action="store_true", help="print other partitions of the pretrained models"
    )
    parser.add_argument(
        "--separability",
        action="store_true",
        help="print how well the pretrained latent spaces separate the labelled types",
    )
    parser.add_argument("--simulate-tol", type=float, nargs="+", default=[0.001, 0.003, 0.01, 0.02])
    args = parser.parse_args()
    if args.table:
        lines = Path(args.results).read_text().splitlines()
        table([json.loads(line) for line in lines if line], args.simulate_tol)
        return
    limit_threads(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.starts or args.separability:
        import pandas as pd
        from _report import markdown

        score = start_alternatives if args.starts else separability
        rows = []
        for name in args.datasets:
            for seed in args.seeds:
                path, truth = pretrained(name, seed, Path(args.model_dir))
                rows.append({"data set": name, "seed": seed, **score(path, truth, seed)})
        print(markdown(pd.DataFrame(rows)))
        return
    variants = json.loads(args.variants)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        for seed in args.seeds:
            path, truth = pretrained(name, seed, Path(args.model_dir))
            for variant, kwargs in variants.items():
                for dec_seed in args.dec_seeds:
                    row = run_variant(path, truth, seed, dec_seed, kwargs)
                    row.update(
                        dataset=name,
                        seed=seed,
                        dec_seed=dec_seed,
                        variant=variant,
                        kwargs=kwargs,
                        tol=kwargs.get("tol", 1e-3),
                    )
                    with open(args.results, "a") as handle:
                        handle.write(json.dumps(row) + "\n")
                    print(name, seed, dec_seed, variant, f"ARI {row['ari']:.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
