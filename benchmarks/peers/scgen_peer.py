"""Run the scgen 2.1.0 PyPI package (the peer) on held-out cell types; run with its own venv.

Usage: <scgen venv>/bin/python benchmarks/peers/scgen_peer.py IN.h5ad OUT_DIR TYPE [TYPE ...]
    --condition-key stim --cell-type-key seurat_annotations --control CTRL --perturbed STIM

IN.h5ad holds log-normalised expression (dense X) of all cells. For each TYPE the
perturbed cells of TYPE are held out, scGen is trained on the rest as its authors
recommend (``max_epochs=100, batch_size=32, early_stopping=True``), and the prediction
from TYPE's control cells is written to OUT_DIR/<TYPE>.h5ad with the training time in
``uns["train_seconds"]``. ``--save-weights`` also saves the trained module's weights
(``benchmarks/perturb_same_weights.py`` predicts from them with scneural's code).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import anndata
import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("types", nargs="+")
    parser.add_argument("--condition-key", default="stim")
    parser.add_argument("--cell-type-key", default="seurat_annotations")
    parser.add_argument("--control", default="CTRL")
    parser.add_argument("--perturbed", default="STIM")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--save-weights",
        action="store_true",
        help="also write the trained module's state_dict to OUT_DIR/<TYPE>_weights.pt",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import scgen
    import scvi

    adata = anndata.read_h5ad(args.input)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    cell_types = adata.obs[args.cell_type_key].astype(str).to_numpy()
    conditions = adata.obs[args.condition_key].astype(str).to_numpy()
    for cell_type in args.types:
        scvi.settings.seed = args.seed
        np.random.seed(args.seed)  # noqa: NPY002 (scgen draws from the global generator)
        held_out = (cell_types == cell_type) & (conditions == args.perturbed)
        train = adata[~held_out].copy()
        scgen.SCGEN.setup_anndata(
            train, batch_key=args.condition_key, labels_key=args.cell_type_key
        )
        model = scgen.SCGEN(train)
        start = time.perf_counter()
        model.train(max_epochs=100, batch_size=32, early_stopping=True, early_stopping_patience=25)
        seconds = time.perf_counter() - start
        if args.save_weights:
            torch.save(model.module.state_dict(), out / f"{cell_type}_weights.pt")
        n_epochs = len(model.history["train_loss_epoch"])
        pred, _ = model.predict(
            ctrl_key=args.control, stim_key=args.perturbed, celltype_to_predict=cell_type
        )
        result = anndata.AnnData(X=np.asarray(pred.X, dtype=np.float32), var=adata.var[[]].copy())
        result.uns["train_seconds"] = float(seconds)
        result.uns["n_epochs"] = int(n_epochs)
        result.write_h5ad(out / f"{cell_type}.h5ad")
        print(f"{cell_type}: trained {n_epochs} epochs in {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
