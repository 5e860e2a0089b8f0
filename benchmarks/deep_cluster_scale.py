"""Scale check of ``sn.tl.deep_cluster``: 100,000 x 2,000 sparse counts, peak RSS < 4 GB.

Builds a synthetic negative-binomial count matrix chunk by chunk (CSR, float32; never a
dense cells x genes array), trains deep_cluster end to end (pretraining, k-means
initialisation, DEC phase with target updates over all cells) and reports wall time,
peak RSS and ARI against the known groups. Usage::

    python benchmarks/deep_cluster_scale.py                     # 100,000 x 2,000
    python benchmarks/deep_cluster_scale.py --n-obs 20000 --pretrain-epochs 2
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def sparse_counts(n_obs: int, n_vars: int, n_groups: int, seed: int = 0, chunk: int = 10_000):
    """NB counts with group markers, built in row chunks; returns (CSR matrix, groups)."""
    from scipy import sparse

    rng = np.random.default_rng(seed)
    base = rng.gamma(shape=0.5, scale=0.4, size=n_vars)
    groups = rng.integers(0, n_groups, size=n_obs)
    markers = rng.choice(n_vars, size=(n_groups, 30), replace=False)
    blocks = []
    for start in range(0, n_obs, chunk):
        g = groups[start : start + chunk]
        mean = np.tile(base, (len(g), 1))
        for j in range(n_groups):
            rows = np.flatnonzero(g == j)
            mean[np.ix_(rows, markers[j])] *= 5.0
        mean *= rng.lognormal(0.0, 0.3, size=(len(g), 1))
        counts = rng.negative_binomial(5.0, 5.0 / (5.0 + mean)).astype(np.float32)
        blocks.append(sparse.csr_matrix(counts))
    return sparse.vstack(blocks, format="csr"), groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-obs", type=int, default=100_000)
    parser.add_argument("--n-vars", type=int, default=2_000)
    parser.add_argument("--n-groups", type=int, default=10)
    parser.add_argument("--pretrain-epochs", type=int, default=1)
    parser.add_argument("--max-epochs", type=int, default=1)
    parser.add_argument("--update-interval", type=int, default=100, help="steps between targets")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import anndata as ad
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    import scneural as sn

    start = time.perf_counter()
    X, groups = sparse_counts(args.n_obs, args.n_vars, args.n_groups)
    adata = ad.AnnData(X=X, obs=pd.DataFrame({"group": groups.astype(str)}))
    adata.obs_names = [f"c{i}" for i in range(adata.n_obs)]
    adata.var_names = [f"g{j}" for j in range(adata.n_vars)]
    build = time.perf_counter() - start
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"data {adata.shape}, nnz {X.nnz:,} ({X.nnz / np.prod(X.shape):.1%}), built in {build:.0f}s"
    )
    start = time.perf_counter()
    sn.tl.deep_cluster(
        adata,
        args.n_groups,
        n_top_genes=None,
        pretrain_epochs=args.pretrain_epochs,
        max_epochs=args.max_epochs,
        update_interval=args.update_interval,
        labels_key="group",
        accelerator="cpu",
        enable_progress_bar=False,
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    uns = adata.uns["deep_cluster"]
    print(
        f"\n| cells x genes | nnz | pretrain epochs | DEC epochs | target updates | time s "
        f"| peak RSS GB (after data) | ARI |\n|---|---|---|---|---|---|---|---|\n"
        f"| {args.n_obs:,} x {args.n_vars:,} | {X.nnz:,} | "
        f"{len(uns['history']['pretrain']['train_loss'])} | "
        f"{len(uns['history']['cluster']['train_loss'])} | {len(uns['label_change'])} | "
        f"{seconds:.0f} | {peak:.2f} ({rss_data:.2f}) | {uns['metrics']['ari']:.3f} |"
    )
    print(f"threads: {args.threads}; peak RSS < 4 GB: {peak < 4}")


if __name__ == "__main__":
    main()
