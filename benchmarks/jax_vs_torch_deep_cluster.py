"""deep_cluster with backend="torch" vs backend="jax" on one data set, in one run.

Protocol (docs/DESIGN.md, deep_cluster): raw counts in, the true k given, default
architecture (256-64, latent 32, noise 2.5), batch 256, pretraining (AMSGrad) then the DEC
phase (Adadelta, tol 1e-3); ARI and NMI against ``obs["Y"]``. Each backend runs with the
same seed(s), interleaved (torch, jax per seed) so both see the same machine load.

Times: a Lightning callback records every training epoch of both phases. "first epoch"
(per phase) includes JAX's one-off XLA compilation; "s / epoch" is the median of the other
epochs (steady state). Threads are fixed before torch and JAX load (one by default).

Usage::

    PYTHONPATH=src python benchmarks/jax_vs_torch_deep_cluster.py --threads 1 --seeds 0
"""

from __future__ import annotations

import argparse
import time

from _threads import backend_comparison_parser, limit_threads


def _parse() -> argparse.Namespace:
    parser = backend_comparison_parser(__doc__, seeds=[0])
    parser.add_argument("--dataset", default="pbmc_10x_scdeepcluster_top2000")
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    parser.add_argument("--max-epochs", type=int, default=None)
    return parser.parse_args()


ARGS = _parse()
# thread settings must be in place before torch/JAX initialise their thread pools
limit_threads(ARGS.threads)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from _report import markdown  # noqa: E402
from _timing import EpochTimer  # noqa: E402

import scneural as sn  # noqa: E402

torch.set_num_threads(ARGS.threads)


def run_one(adata, backend: str, seed: int) -> dict:
    adata = adata.copy()
    k = int(adata.obs["Y"].nunique())
    timer = EpochTimer()
    extra = {}
    if ARGS.pretrain_epochs is not None:
        extra["pretrain_epochs"] = ARGS.pretrain_epochs
    if ARGS.max_epochs is not None:
        extra["max_epochs"] = ARGS.max_epochs
    start = time.perf_counter()
    sn.tl.deep_cluster(
        adata,
        k,
        backend=backend,
        labels_key="Y",
        random_state=seed,
        accelerator="cpu",
        enable_progress_bar=False,
        callbacks=[timer],
        **extra,
    )
    total = time.perf_counter() - start
    scores = adata.uns["deep_cluster"]["metrics"]
    steady = [t for phase in timer.phases for t in phase[1:]]
    steady_cpu = [t for phase in timer.cpu_phases for t in phase[1:]]
    return {
        "backend": backend,
        "seed": seed,
        "ari": scores["ari"],
        "nmi": scores["nmi"],
        "pretrain_epochs": len(timer.phases[0]),
        "dec_epochs": len(timer.phases[1]) if len(timer.phases) > 1 else 0,
        "first_epochs_s": float(sum(phase[0] for phase in timer.phases if phase)),
        "s_per_epoch": float(np.median(steady)) if steady else float("nan"),
        "cpu_s_per_epoch": float(np.median(steady_cpu)) if steady_cpu else float("nan"),
        "total_s": total,
    }


def main() -> None:
    adata = sn.datasets.load(ARGS.dataset)
    print(
        f"{ARGS.dataset}: {adata.n_obs} cells x {adata.n_vars} genes, "
        f"k={adata.obs['Y'].nunique()}; threads={ARGS.threads}, seeds={ARGS.seeds}",
        flush=True,
    )
    rows = []
    for seed in ARGS.seeds:
        for backend in ARGS.backends:
            row = run_one(adata, backend, seed)
            print(row, flush=True)
            rows.append(row)
    print()
    print(markdown(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
