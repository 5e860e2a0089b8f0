"""Thread limits for the benchmark scripts: call before importing torch or JAX.

Their thread pools read the environment when they load, so this module imports nothing
heavy.
"""

from __future__ import annotations

import argparse
import os


def limit_threads(n: int) -> None:
    """Fix OpenMP/MKL threads and, for one thread, XLA's CPU threads; JAX on the CPU."""
    os.environ["OMP_NUM_THREADS"] = str(n)
    os.environ["MKL_NUM_THREADS"] = str(n)
    if n == 1:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def backend_comparison_parser(doc: str, seeds: list[int]) -> argparse.ArgumentParser:
    """Arguments every torch-vs-JAX script takes: ``--threads``, ``--seeds``, ``--backends``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and XLA")
    parser.add_argument("--seeds", type=int, nargs="+", default=seeds)
    parser.add_argument("--backends", nargs="+", default=["torch", "jax"])
    return parser
