"""perturb (scGen) with backend="torch" vs backend="jax" on kang_ifnb_sub, in one run.

Protocol (benchmarks/perturb.py, docs/benchmarks.md): normalize_total(1e4) + log1p, 2000
HVGs; hold out the stimulated cells of one type (default CD4 Naive T), train on the rest
with the defaults of ``sn.tl.perturb`` (800-800 hidden, latent 100, dropout 0.2, batch 64,
Adam 1e-3, gradient norm clipped at 50, at most 40 epochs with early stopping on 5% of the
cells), predict them from the type's control cells; R² of per-gene means over all genes
and the top-100 DE genes. Both backends per seed, interleaved, so they see the same
machine load.

Times: a Lightning callback records every training epoch. "first epoch" includes JAX's
one-off XLA compilation; "s / epoch" is the median of the later epochs. Threads are fixed
before torch and JAX load (one each by default, as benchmarks/jax_vs_torch.py).

Usage::

    PYTHONPATH=src python benchmarks/jax_vs_torch_perturb.py --threads 1 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

from _threads import backend_comparison_parser, limit_threads


def _parse() -> argparse.Namespace:
    parser = backend_comparison_parser(__doc__, seeds=[0, 1, 2])
    parser.add_argument("--type", default="CD4 Naive T", help="the held-out cell type")
    parser.add_argument("--max-epochs", type=int, default=None)
    return parser.parse_args()


ARGS = _parse()
# thread settings must be in place before torch/JAX initialise their thread pools
limit_threads(ARGS.threads)

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scanpy as sc  # noqa: E402
import torch  # noqa: E402
from _report import markdown  # noqa: E402
from _timing import EpochTimer  # noqa: E402
from perturb import CELL_TYPE, CONDITION, CONTROL, STIM, preprocess, scores  # noqa: E402

import scneural as sn  # noqa: E402

torch.set_num_threads(ARGS.threads)


def main() -> None:
    warnings.filterwarnings("ignore")
    sc.settings.verbosity = 0
    adata = preprocess()
    types = adata.obs[CELL_TYPE].astype(str).to_numpy()
    conditions = adata.obs[CONDITION].astype(str).to_numpy()
    held = (types == ARGS.type) & (conditions == STIM)
    control = (types == ARGS.type) & (conditions == CONTROL)
    real = adata[held]
    de = sn.metrics.top_de_genes(adata[types == ARGS.type], CONDITION, STIM, CONTROL, n_genes=100)
    print(
        f"kang_ifnb_sub: {int((~held).sum())} training cells, {adata.n_vars} HVGs, held out "
        f"{int(held.sum())} stimulated {ARGS.type}; threads={ARGS.threads}, seeds={ARGS.seeds}",
        flush=True,
    )
    rows = [{"backend": "control unchanged", **scores(real, adata.X[control], de)}]
    for seed in ARGS.seeds:
        for backend in ARGS.backends:
            train = adata[~held].copy()
            timer = EpochTimer()
            start = time.perf_counter()
            pred = sn.tl.perturb(
                train,
                condition_key=CONDITION,
                control=CONTROL,
                perturbed=STIM,
                cell_type_key=CELL_TYPE,
                predict=ARGS.type,
                backend=backend,
                random_state=seed,
                max_epochs=ARGS.max_epochs,
                accelerator="cpu",
                enable_progress_bar=False,
                callbacks=[timer],
            )
            total = time.perf_counter() - start
            later = timer.times[1:] or timer.times
            rows.append(
                {
                    "backend": backend,
                    "seed": seed,
                    **scores(real, pred.X, de),
                    "epochs": len(timer.times),
                    "first_epoch_s": timer.times[0],
                    "s_per_epoch": float(np.median(later)),
                    "cpu_s_per_epoch": float(np.median(timer.cpu_times[1:] or timer.cpu_times)),
                    "train_s": train.uns["perturb"]["train_seconds"],
                    "total_s": total,
                }
            )
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    runs = frame[frame["backend"] != "control unchanged"]
    summary = runs.groupby("backend", sort=False).agg(
        r2_all=("r2_all", "mean"),
        r2_all_sd=("r2_all", "std"),
        r2_top100=("r2_top100", "mean"),
        r2_top100_sd=("r2_top100", "std"),
        epochs=("epochs", "mean"),
        first_epoch_s=("first_epoch_s", "mean"),
        s_per_epoch=("s_per_epoch", "mean"),
        cpu_s_per_epoch=("cpu_s_per_epoch", "mean"),
        train_s=("train_s", "mean"),
    )
    print()
    print(markdown(summary.reset_index()))
    print()
    columns = ["backend", "seed", "r2_all", "r2_top100", "epochs", "first_epoch_s", "s_per_epoch"]
    columns.append("cpu_s_per_epoch")
    print(markdown(frame.reindex(columns=columns)))


if __name__ == "__main__":
    main()
