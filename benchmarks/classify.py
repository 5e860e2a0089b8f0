"""Benchmark of ``sn.tl.classify`` against its peers, in one run (DESIGN.md protocol).

Data sets (from ``SCNEURAL_DATA_DIR`` or ``../shared/data``):

- ``pbmc3k_annotated``: cells with a NaN label dropped; normalize_total(1e4) + log1p;
  80/20 split stratified by ``seurat_annotations`` (``random_state=0``).
- ``cellbench_3cl_celseq2_dropseq``: singlets only (``demuxlet_cls == "SNG"``), same
  normalisation; train on the CELseq2 batch, test on the Dropseq batch; label ``cell_line``.

Highly variable genes (3000, scanpy's ``flavor="seurat"`` on the log-normalised values) are
chosen on the training part only.

Methods, each trained on the training part and predicting the test part:

- ``scneural`` — ``sn.tl.classify`` (torch) on the log-normalised HVGs, transferred with
  ``sn.tl.classify(test, model=clf)``.
- ``logreg HVG (scaled)`` — scikit-learn ``LogisticRegression`` on the HVGs scaled with the
  training part's mean and standard deviation (clipped at 10, as ``sc.pp.scale``).
- ``logreg all genes`` — the same on every gene, log-normalised, unscaled (sparse).
- ``CellTypist 1.7.1`` — ``celltypist.train(feature_selection=True)`` and
  ``celltypist.annotate(majority_voting=False)`` on all genes, run in its own venv by
  ``benchmarks/peers/celltypist_peer.py``; data exchanged as ``.h5ad``.
- ``scANVI`` — scvi-tools' SCVI (``n_latent=10``, default epochs) on the HVGs' counts of train
  and test together, then ``SCANVI.from_scvi_model`` with the test labels masked as
  ``"Unknown"`` (cellbench: ``batch_key="batch"``, the usual reference-to-query set-up).

Reported: accuracy and macro-F1 on the test part, and the wall and CPU seconds of training
plus prediction (data loading and normalisation excluded; CellTypist's times are measured
inside its process, without interpreter start-up and h5ad I/O). All methods run with the
same number of threads (``--threads``, default 1: torch, BLAS/OpenMP and scikit-learn).

Usage::

    PYTHONPATH=src python benchmarks/classify.py [--threads 1] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))

import celltypist_peer  # noqa: E402

N_HVG = 3000
UNKNOWN = "Unknown"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="threads for every method")
    parser.add_argument("--seed", type=int, default=0, help="random_state of every method")
    parser.add_argument(
        "--datasets", nargs="+", default=["pbmc3k_annotated", "cellbench_3cl_celseq2_dropseq"]
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["scneural", "logreg_hvg", "logreg_all", "celltypist", "scanvi"],
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    return parser.parse_args()


def set_threads(n: int) -> None:
    """Same thread count for torch, BLAS/OpenMP (here and in the CellTypist subprocess)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)


# --------------------------------------------------------------------------- data


def load_split(name: str):
    """(train, test, labels_key, batch_key) with log-normalised X and counts in layers."""
    import scanpy as sc
    from sklearn.model_selection import train_test_split

    import scneural as sn

    adata = sn.datasets.load(name)
    if name == "pbmc3k_annotated":
        key, batch_key = "seurat_annotations", None
        adata = adata[adata.obs[key].notna()].copy()
    elif name == "cellbench_3cl_celseq2_dropseq":
        key, batch_key = "cell_line", "batch"
        adata = adata[adata.obs["demuxlet_cls"] == "SNG"].copy()
    else:
        raise ValueError(f"no protocol for data set {name!r}")
    adata.obs[key] = adata.obs[key].astype(str).astype("category")
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    if batch_key is None:
        train_idx, test_idx = train_test_split(
            np.arange(adata.n_obs), test_size=0.2, stratify=adata.obs[key], random_state=0
        )
        train, test = adata[np.sort(train_idx)].copy(), adata[np.sort(test_idx)].copy()
    else:
        train = adata[adata.obs[batch_key] == "CELseq2"].copy()
        test = adata[adata.obs[batch_key] == "Dropseq"].copy()
    sc.pp.highly_variable_genes(train, n_top_genes=N_HVG)
    hvg = train.var_names[train.var["highly_variable"].to_numpy()]
    train.uns["hvg_names"] = list(hvg)
    return train, test, key, batch_key


# --------------------------------------------------------------------------- methods


def run_scneural(train, test, key, batch_key, seed):
    import scneural as sn

    hvg = train.uns["hvg_names"]
    tr, te = train[:, hvg].copy(), test[:, hvg].copy()
    clf = sn.tl.classify(tr, key, random_state=seed, enable_progress_bar=False)
    sn.tl.classify(te, model=clf)
    n_epochs = len(clf.history["validation_loss"])
    return te.obs["classify_label"].astype(str).to_numpy(), {"epochs": n_epochs}


def _logreg(x_train, y_train, x_test, seed):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=1000, random_state=seed)
    model.fit(x_train, y_train)
    return model.predict(x_test)


def run_logreg_hvg(train, test, key, batch_key, seed):
    from scipy import sparse

    hvg = train.uns["hvg_names"]
    x_train = train[:, hvg].X
    x_test = test[:, hvg].X
    x_train = x_train.toarray() if sparse.issparse(x_train) else np.asarray(x_train)
    x_test = x_test.toarray() if sparse.issparse(x_test) else np.asarray(x_test)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    x_train = np.clip((x_train - mean) / std, None, 10)
    x_test = np.clip((x_test - mean) / std, None, 10)
    return _logreg(x_train, train.obs[key].astype(str), x_test, seed), {}


def run_logreg_all(train, test, key, batch_key, seed):
    return _logreg(train.X, train.obs[key].astype(str), test.X, seed), {}


def run_celltypist(train, test, key, batch_key, seed, *, threads: int):
    python = celltypist_peer.venv_python()
    with tempfile.TemporaryDirectory(prefix="scneural-celltypist-") as tmp:
        paths = {}
        for name, part in (("train", train), ("test", test)):
            light = part.copy()
            light.layers = {}
            light.obs = pd.DataFrame({key: part.obs[key].astype(str)}, index=part.obs_names)
            light.uns = {}
            light.var = pd.DataFrame(index=part.var_names)
            paths[name] = Path(tmp) / f"{name}.h5ad"
            light.write_h5ad(paths[name])
        out = Path(tmp) / "out.json"
        cmd = [str(python), str(HERE / "peers" / "celltypist_peer.py")]
        cmd += [str(paths["train"]), str(paths["test"]), key, str(out), "--n-jobs", str(threads)]
        cmd += ["--seed", str(seed)]
        subprocess.run(cmd, check=True, env=os.environ.copy(), capture_output=True)
        result = json.loads(out.read_text())
    predicted = pd.Series(result["predicted"], index=result["obs_names"]).loc[test.obs_names]
    timing = {
        "wall_s": result["train_s"] + result["predict_s"],
        "cpu_s": result["train_cpu_s"] + result["predict_cpu_s"],
    }
    return predicted.to_numpy(), {"timing": timing, "version": result["version"]}


def run_scanvi(train, test, key, batch_key, seed):
    import anndata as ad
    import scvi

    scvi.settings.seed = seed
    hvg = train.uns["hvg_names"]
    full = ad.AnnData(
        X=ad.concat([train[:, hvg], test[:, hvg]], join="inner").layers["counts"].copy(),
        obs=pd.concat([train.obs, test.obs]).loc[:, [key] + ([batch_key] if batch_key else [])],
        var=pd.DataFrame(index=hvg),
    )
    labels = full.obs[key].astype(str).to_numpy().copy()
    labels[train.n_obs :] = UNKNOWN
    full.obs["_masked_label"] = labels
    scvi.model.SCVI.setup_anndata(full, batch_key=batch_key)
    vae = scvi.model.SCVI(full, n_latent=10)
    vae.train(enable_progress_bar=False)
    lvae = scvi.model.SCANVI.from_scvi_model(
        vae, unlabeled_category=UNKNOWN, labels_key="_masked_label"
    )
    lvae.train(enable_progress_bar=False)
    predicted = lvae.predict(full, indices=np.arange(train.n_obs, full.n_obs))
    epochs = {"scvi_epochs": len(vae.history["elbo_train"]), "scanvi_epochs": None}
    epochs["scanvi_epochs"] = len(lvae.history["elbo_train"])
    return np.asarray(predicted).astype(str), epochs


METHODS: dict[str, tuple[str, Callable]] = {
    "scneural": ("scneural (sn.tl.classify, torch)", run_scneural),
    "logreg_hvg": ("logreg, 3000 HVGs scaled", run_logreg_hvg),
    "logreg_all": ("logreg, all genes", run_logreg_all),
    "celltypist": ("CellTypist 1.7.1", run_celltypist),
    "scanvi": ("scANVI (scvi-tools 1.4.2)", run_scanvi),
}


# --------------------------------------------------------------------------- main


def main() -> None:
    args = parse_args()
    set_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi", "scneural"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import scvi
    import torch

    import scneural as sn

    rows = []
    for dataset in args.datasets:
        train, test, key, batch_key = load_split(dataset)
        truth = test.obs[key].astype(str).to_numpy()
        print(
            f"# {dataset}: train {train.n_obs} cells, test {test.n_obs} cells, "
            f"{train.n_vars} genes ({N_HVG} HVGs), {train.obs[key].nunique()} classes",
            flush=True,
        )
        for method in args.methods:
            label, fn = METHODS[method]
            extra_kwargs = {"threads": args.threads} if method == "celltypist" else {}
            wall, cpu = time.perf_counter(), time.process_time()
            predicted, info = fn(train, test, key, batch_key, args.seed, **extra_kwargs)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            timing = info.pop("timing", {"wall_s": wall, "cpu_s": cpu})
            row = {
                "dataset": dataset,
                "method": label,
                "accuracy": sn.metrics.accuracy(truth, predicted),
                "macro_f1": sn.metrics.macro_f1(truth, predicted),
                **timing,
                **info,
            }
            rows.append(row)
            print(
                f"  {label}: accuracy {row['accuracy']:.4f}, macro-F1 {row['macro_f1']:.4f}, "
                f"{row['wall_s']:.1f} s wall, {row['cpu_s']:.1f} s CPU {info or ''}",
                flush=True,
            )
    table = pd.DataFrame(rows)
    print()
    print(
        f"threads: {args.threads} (torch {torch.get_num_threads()}), seed {args.seed}, "
        f"torch {torch.__version__}, scvi-tools {scvi.__version__}"
    )
    print()
    print("| data set | method | accuracy | macro-F1 | train+predict wall (s) | CPU (s) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['dataset']} | {row['method']} | {row['accuracy']:.3f} | "
            f"{row['macro_f1']:.3f} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} |"
        )
    if args.out is not None:
        args.out.write_text(table.to_json(orient="records", indent=1))


if __name__ == "__main__":
    main()
