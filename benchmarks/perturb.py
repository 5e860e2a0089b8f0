"""Benchmark of sn.tl.perturb (scGen) on Kang et al. IFN-beta PBMC, with its peer, in one run.

Protocol (docs/benchmarks.md, DESIGN.md): normalize_total(1e4) + log1p on all cells, 2000
HVGs (flavor "seurat"); for each held-out type T, drop T's stimulated cells, train on the
rest, predict them from T's control cells; R² = squared Pearson r of per-gene means of
predicted vs real stimulated T cells over all genes and over the top-100 DE genes
(wilcoxon, STIM vs CTRL within real T). Compared in the same run:

- ``control unchanged``: T's control cells as the prediction;
- ``mean shift``: T's control cells + the cell-type balanced mean shift of the other types
  (average over types of mean(STIM) - mean(CTRL));
- ``scgen 2.1.0``: the scGen package from PyPI in its own venv (built by
  ``benchmarks/peers/setup_scgen_venv.sh``), trained as its authors recommend, run through
  ``benchmarks/peers/scgen_peer.py`` with data exchanged as h5ad files;
- ``scneural``: ``sn.tl.perturb``;
- ``scneural residual=True``: the same trained model, predicting the control cells'
  expression plus the decoded change ``decode(z + delta) - decode(z)``;
- ``scneural delta_cells='paired'``: the same trained model, the delta from the cell
  types seen in both conditions only (scGen's, the default, averages every type present
  in a condition);
- ``scneural clip_at_zero=False``: the same trained model and prediction, the decoder's
  output not raised to 0 where it is negative (as scgen 2.1.0 leaves it).

Usage::

    PYTHONPATH=src python benchmarks/perturb.py [--types "CD4 Naive T" ...] [--no-peer]

Both methods train on one CPU thread (``--threads``), one after the other per type.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import torch
from _report import markdown

import scneural as sn

TYPES = ["CD4 Naive T", "CD14 Mono", "B", "NK"]
CONDITION, CELL_TYPE, CONTROL, STIM = "stim", "seurat_annotations", "CTRL", "STIM"
HERE = Path(__file__).resolve().parent
#: the rows ``--summarize`` compares ours with, seed by seed
PAIRED_WITH = ("scgen 2.1.0", "control + balanced mean shift")
#: rows scored from the trained model of the ``scneural`` row, with one option changed
VARIANTS = {
    "scneural residual=True": {"residual": True},
    "scneural delta_cells='paired'": {"delta_cells": "paired"},
    "scneural clip_at_zero=False": {"clip_at_zero": False},
}


def preprocess() -> ad.AnnData:
    adata = sn.datasets.load("kang_ifnb_sub")
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=2000, flavor="seurat")
    adata = adata[:, adata.var["highly_variable"]]
    return ad.AnnData(
        X=np.asarray(adata.X.toarray(), dtype=np.float32),
        obs=pd.DataFrame(
            {
                CONDITION: pd.Categorical(adata.obs[CONDITION].astype(str).to_numpy()),
                CELL_TYPE: pd.Categorical(adata.obs[CELL_TYPE].astype(str).to_numpy()),
            },
            index=np.asarray(adata.obs_names, dtype=str),
        ),
        var=pd.DataFrame(index=np.asarray(adata.var_names, dtype=str)),
    )


def mean_shift(train: ad.AnnData, control_cells: np.ndarray) -> np.ndarray:
    """Control cells + the average over types (seen in both conditions) of the mean shift."""
    types = train.obs[CELL_TYPE].astype(str).to_numpy()
    conditions = train.obs[CONDITION].astype(str).to_numpy()
    shifts = []
    for t in np.unique(types):
        stim, ctrl = (types == t) & (conditions == STIM), (types == t) & (conditions == CONTROL)
        if stim.any() and ctrl.any():
            shifts.append(train.X[stim].mean(axis=0) - train.X[ctrl].mean(axis=0))
    return control_cells + np.mean(shifts, axis=0)


def hold_out(adata: ad.AnnData, cell_type: str) -> tuple:
    """The protocol's split for one type: its real perturbed cells, the training data
    without them, the mask of its control cells and its top-100 DE genes."""
    types = adata.obs[CELL_TYPE].astype(str).to_numpy()
    conditions = adata.obs[CONDITION].astype(str).to_numpy()
    held = (types == cell_type) & (conditions == STIM)
    control = (types == cell_type) & (conditions == CONTROL)
    de = sn.metrics.top_de_genes(adata[types == cell_type], CONDITION, STIM, CONTROL, n_genes=100)
    return adata[held], adata[~held].copy(), control, de


def perturb_call(cell_type: str, seed: int) -> dict:
    """The ``sn.tl.perturb`` arguments that predict ``cell_type`` in this protocol."""
    return {
        "condition_key": CONDITION,
        "control": CONTROL,
        "perturbed": STIM,
        "cell_type_key": CELL_TYPE,
        "predict": cell_type,
        "random_state": seed,
    }


def write_input(workdir: Path) -> tuple[ad.AnnData, Path]:
    """The preprocessed data, also written to ``workdir`` for the peer's venv to read."""
    adata = preprocess()
    path = workdir / "kang_hvg.h5ad"
    with ad.settings.override(allow_write_nullable_strings=False):
        adata.write_h5ad(path)
    return adata, path


def setup_peer(venv: str) -> str:
    """Build (or reuse) the scgen peer's venv; returns its python."""
    subprocess.run(["bash", str(HERE / "peers" / "setup_scgen_venv.sh"), venv], check=True)
    return str(Path(venv) / "bin" / "python")


def run_peer(
    python: str,
    data: Path,
    out: Path,
    cell_type: str,
    threads: int,
    seed: int = 0,
    save_weights: bool = False,
) -> dict:
    """Train and predict with the scgen peer; ``save_weights`` also writes
    ``out/<cell_type>_weights.pt`` (the trained module's ``state_dict``)."""
    command = [python, str(HERE / "peers" / "scgen_peer.py"), str(data), str(out), cell_type]
    command += ["--threads", str(threads), "--seed", str(seed)]
    if save_weights:
        command.append("--save-weights")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scgen peer failed:\n{done.stderr[-3000:]}")
    result = ad.read_h5ad(out / f"{cell_type}.h5ad")
    return {
        "X": result.X,
        "train_seconds": float(result.uns["train_seconds"]),
        "epochs": int(result.uns["n_epochs"]),
    }


def scores(real: ad.AnnData, predicted: np.ndarray, de: list[str]) -> dict:
    pred = ad.AnnData(X=np.asarray(predicted, dtype=np.float32), var=real.var[[]].copy())
    r = sn.metrics.perturbation_r2(real, pred, de_genes=de)
    return {
        "r2_all": r["r2_mean_all"],
        "r2_top100": r["r2_mean_de"],
        "r2_var_all": r["r2_var_all"],
        "r2_var_top100": r["r2_var_de"],
    }


def summarize(runs: list[pd.DataFrame]) -> str:
    """Markdown table of mean (sd) over runs (seeds) per held-out type and method (median
    training time)."""
    frame = pd.concat(runs, ignore_index=True)
    metrics = ["r2_all", "r2_top100", "r2_var_all", "train_seconds"]
    grouped = frame.groupby(["type", "method"], sort=False)
    mean, sd = grouped[metrics].mean(), grouped[metrics].std(ddof=0)
    # times: the median, robust to a run slowed by other work on a shared machine
    mean["train_seconds"] = grouped["train_seconds"].median()
    table = pd.DataFrame(index=mean.index)
    table["runs"] = grouped.size()
    for metric in metrics:
        table[metric] = [
            "" if np.isnan(m) else f"{m:.3f} ({d:.3f})" if metric != "train_seconds" else f"{m:.0f}"
            for m, d in zip(mean[metric], sd[metric])
        ]
    return markdown(table.reset_index())


def paired_differences(
    runs: list[pd.DataFrame], ours: str = "scneural", others: tuple[str, ...] = PAIRED_WITH
) -> str:
    """Markdown table of ``ours`` minus each of ``others`` per held-out type, seed by seed
    (each run one seed): mean (± standard error) of the differences and the number of seeds
    where ``ours`` is at least as high, for R² over all genes and over the top-100."""
    rows = []
    for cell_type in pd.concat(runs)["type"].unique():
        for other in others:
            diffs = {"r2_all": [], "r2_top100": []}
            for run in runs:
                run = run[run["type"] == cell_type].set_index("method")
                if ours in run.index and other in run.index:
                    for metric, values in diffs.items():
                        values.append(run.at[ours, metric] - run.at[other, metric])
            if not diffs["r2_all"]:
                continue
            row = {"type": cell_type, "ours minus": other, "seeds": len(diffs["r2_all"])}
            for metric, values in diffs.items():
                values = np.asarray(values)
                se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.nan
                row[metric] = f"{values.mean():+.4f} (± {se:.4f})"
                row[f"{metric} ours ≥ at"] = int((values >= 0).sum())
            rows.append(row)
    return markdown(pd.DataFrame(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--types", nargs="+", default=TYPES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-peer", action="store_true", help="skip the scgen peer")
    parser.add_argument("--peer-venv", default="/tmp/scgen_peer_venv")
    parser.add_argument("--workdir", default="/tmp/scneural_perturb_bench")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--kwargs", default="{}", help="JSON of extra sn.tl.perturb arguments")
    parser.add_argument(
        "--variants",
        default=None,
        metavar="JSON",
        help="rows scored from the same trained model, {label: {option: value}} "
        "(default: residual=True, delta_cells='paired' and clip_at_zero=False)",
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument(
        "--summarize",
        nargs="+",
        default=None,
        metavar="JSON",
        help="only print mean (sd) over the --json files of several seeds",
    )
    args = parser.parse_args()
    if args.summarize:
        runs = [pd.read_json(path) for path in args.summarize]
        print(summarize(runs))
        print()
        print(paired_differences(runs))
        return
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    sc.settings.verbosity = 0
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    adata, data_path = write_input(workdir)
    peer_python = None if args.no_peer else setup_peer(args.peer_venv)
    extra = json.loads(args.kwargs)
    variants = VARIANTS if args.variants is None else json.loads(args.variants)
    # --kwargs may name max_epochs too (it then overrides --max-epochs)
    max_epochs = extra.pop("max_epochs", args.max_epochs)
    rows = []
    for cell_type in args.types:
        real, train, control, de = hold_out(adata, cell_type)
        rows.append({"type": cell_type, "method": "control unchanged"})
        rows[-1].update(scores(real, adata.X[control], de))
        rows.append({"type": cell_type, "method": "control + balanced mean shift"})
        rows[-1].update(scores(real, mean_shift(train, adata.X[control]), de))

        call = {**perturb_call(cell_type, args.seed), **extra}
        start = time.perf_counter()
        pred, model = sn.tl.perturb(
            train,
            max_epochs=max_epochs,
            accelerator="cpu",
            enable_progress_bar=False,
            return_model=True,
            **call,
        )
        total = time.perf_counter() - start
        rows.append({"type": cell_type, "method": "scneural"})
        rows[-1].update(scores(real, pred.X, de))
        rows[-1].update(
            {
                "train_seconds": train.uns["perturb"]["train_seconds"],
                "total_seconds": total,
                "epochs": len(model.history["train_loss"]),
            }
        )
        print(rows[-1], flush=True)
        # the same model with the options that change only the arithmetic
        for label, option in variants.items():
            variant = sn.tl.perturb(train.copy(), model=model, **{**call, **option})
            rows.append({"type": cell_type, "method": label})
            rows[-1].update(scores(real, variant.X, de))
            print(rows[-1], flush=True)
        if peer_python is not None:
            peer = run_peer(
                peer_python, data_path, workdir / "peer", cell_type, args.threads, args.seed
            )
            rows.append({"type": cell_type, "method": "scgen 2.1.0"})
            rows[-1].update(scores(real, peer["X"], de))
            rows[-1].update({"train_seconds": peer["train_seconds"], "epochs": peer["epochs"]})
            print(rows[-1], flush=True)

    table = pd.DataFrame(rows)
    columns = ["type", "method", "r2_all", "r2_top100", "r2_var_all", "train_seconds", "epochs"]
    table = table.reindex(columns=columns)
    table["epochs"] = table["epochs"].astype("Int64")
    print()
    print(
        f"kang_ifnb_sub, 2000 HVGs, seed {args.seed}, {args.threads} torch thread(s); "
        f"sn.tl.perturb extra arguments: {extra or 'none'}, max_epochs={max_epochs}"
    )
    print(markdown(table))
    if args.json:
        Path(args.json).write_text(table.to_json(orient="records", indent=1))


if __name__ == "__main__":
    sys.exit(main())
