"""classify with backend="torch" vs backend="jax" on pbmc3k, in one run.

Protocol (docs/DESIGN.md, classify): pbmc3k, cells with a label, genes detected in >= 3
cells, normalize_total(1e4) + log1p; 80/20 stratified split (random_state 0). Each backend
trains on the 80 % (default architecture 512-256-128, dropout 0.2, batch 128, Adam 1e-3,
early stopping on a 10 % validation split) for seeds 0, 1, 2 and is scored on the 20 %.

Times: a Lightning callback records every training epoch. "first epoch" includes JAX's
one-off XLA compilation; "s / epoch" is the median of the later epochs (steady state).
Threads are fixed before torch and JAX load: torch.set_num_threads(N) and, for XLA,
``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` when N = 1.

Usage::

    PYTHONPATH=src python benchmarks/jax_vs_torch.py --threads 1 --max-epochs 30
"""

from __future__ import annotations

import argparse
import sys
import time

from _threads import backend_comparison_parser, limit_threads


def _parse() -> argparse.Namespace:
    parser = backend_comparison_parser(__doc__, seeds=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=30)
    return parser.parse_args()


ARGS = _parse()
# thread settings must be in place before torch/JAX initialise their thread pools
limit_threads(ARGS.threads)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scanpy as sc  # noqa: E402
import torch  # noqa: E402
from _report import markdown  # noqa: E402
from _timing import EpochTimer  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import scneural as sn  # noqa: E402

torch.set_num_threads(ARGS.threads)
LABELS = "seurat_annotations"


def load_split() -> tuple[sc.AnnData, sc.AnnData]:
    adata = sn.datasets.load("pbmc3k_annotated")
    adata = adata[adata.obs[LABELS].notna()].copy()
    sc.pp.filter_genes(adata, min_cells=3)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    train, test = train_test_split(
        np.arange(adata.n_obs), test_size=0.2, stratify=adata.obs[LABELS], random_state=0
    )
    return adata[train].copy(), adata[test].copy()


def run_one(ref, query, backend: str, seed: int) -> dict:
    ref, query = ref.copy(), query.copy()
    timer = EpochTimer()
    start = time.perf_counter()
    model = sn.tl.classify(
        ref,
        LABELS,
        backend=backend,
        random_state=seed,
        max_epochs=ARGS.max_epochs,
        enable_progress_bar=False,
        callbacks=[timer],
    )
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    sn.tl.classify(query, LABELS, model=model)
    predict_s = time.perf_counter() - start
    metrics = query.uns["classify"]["metrics"]
    later = timer.times[1:] or timer.times
    return {
        "backend": backend,
        "seed": seed,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "epochs": len(timer.times),
        "first_epoch_s": timer.times[0],
        "s_per_epoch": float(np.median(later)),
        "cpu_s_per_epoch": float(np.median(timer.cpu_times[1:] or timer.cpu_times)),
        "train_s": train_s,
        "predict_s": predict_s,
    }


def main() -> None:
    ref, query = load_split()
    print(
        f"pbmc3k: {ref.n_obs} train / {query.n_obs} test cells, {ref.n_vars} genes; "
        f"threads={ARGS.threads}, max_epochs={ARGS.max_epochs}, seeds={ARGS.seeds}",
        flush=True,
    )
    rows = []
    for seed in ARGS.seeds:
        for backend in ARGS.backends:
            row = run_one(ref, query, backend, seed)
            print(row, flush=True)
            rows.append(row)
    frame = pd.DataFrame(rows)
    summary = frame.groupby("backend", sort=False).agg(
        accuracy=("accuracy", "mean"),
        accuracy_sd=("accuracy", "std"),
        macro_f1=("macro_f1", "mean"),
        macro_f1_sd=("macro_f1", "std"),
        epochs=("epochs", "mean"),
        first_epoch_s=("first_epoch_s", "mean"),
        s_per_epoch=("s_per_epoch", "mean"),
        cpu_s_per_epoch=("cpu_s_per_epoch", "mean"),
        train_s=("train_s", "mean"),
        predict_s=("predict_s", "mean"),
    )
    print("\nPer run\n")
    print(markdown(frame))
    print(f"\nMean over seeds {ARGS.seeds} (sd: seed-to-seed)\n")
    print(markdown(summary.reset_index()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
