"""CellTypist 1.7.1 as a benchmark peer, run in its own virtual environment.

Two uses:

``python benchmarks/peers/celltypist_peer.py --setup``
    (any Python >= 3.11) creates the venv (default ``/tmp/scneural-peer-celltypist``) with
    ``celltypist==1.7.1 scikit-learn==1.6.1`` (the install that worked here, see PEERS.md)
    and prints the path of its python.

``<venv>/bin/python benchmarks/peers/celltypist_peer.py train.h5ad test.h5ad LABELS OUT.json``
    trains CellTypist on ``train.h5ad`` (log-normalised ``X``, labels in ``obs[LABELS]``),
    annotates ``test.h5ad`` without majority voting and writes the predictions and the
    train/predict wall and CPU times to ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VENV = Path(os.environ.get("SCNEURAL_CELLTYPIST_VENV", "/tmp/scneural-peer-celltypist"))
PINS = ["celltypist==1.7.1", "scikit-learn==1.6.1"]


def venv_python(venv: Path = VENV) -> Path:
    """Python of the peer venv, creating the venv first if it does not exist."""
    python = venv / "bin" / "python"
    marker = venv / ".scneural-ready"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
        marker.write_text(" ".join(PINS) + "\n")
    return python


def run(
    train_path: str, test_path: str, labels_key: str, out_path: str, n_jobs: int, seed: int
) -> None:
    """Train and annotate; write predictions and timings as JSON.

    CellTypist's feature selection trains scikit-learn's SGD classifier without a
    ``random_state``, which draws from numpy's global generator: seeding that makes a run
    repeatable (unseeded, pbmc3k macro-F1 ranged 0.91-0.96 between runs).
    """
    import anndata as ad
    import celltypist
    import numpy as np

    np.random.seed(seed)  # noqa: NPY002 (the global generator is what CellTypist draws from)
    train = ad.read_h5ad(train_path)
    test = ad.read_h5ad(test_path)
    start, cpu = time.perf_counter(), time.process_time()
    model = celltypist.train(
        train, labels=labels_key, feature_selection=True, n_jobs=n_jobs, check_expression=True
    )
    train_s, train_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    result = celltypist.annotate(test, model=model, majority_voting=False)
    predict_s, predict_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    labels = result.predicted_labels["predicted_labels"].astype(str).tolist()
    Path(out_path).write_text(
        json.dumps(
            {
                "predicted": labels,
                "obs_names": test.obs_names.tolist(),
                "train_s": train_s,
                "predict_s": predict_s,
                "train_cpu_s": train_cpu_s,
                "predict_cpu_s": predict_cpu_s,
                "n_jobs": n_jobs,
                "seed": seed,
                "version": celltypist.__version__,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="create the venv, print its python")
    parser.add_argument("train", nargs="?")
    parser.add_argument("test", nargs="?")
    parser.add_argument("labels_key", nargs="?")
    parser.add_argument("out", nargs="?")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of numpy's global generator")
    args = parser.parse_args()
    if args.setup:
        print(venv_python())
        return
    if None in (args.train, args.test, args.labels_key, args.out):
        parser.error("train, test, labels_key and out are required without --setup")
    run(args.train, args.test, args.labels_key, args.out, args.n_jobs, args.seed)


if __name__ == "__main__":
    main()
