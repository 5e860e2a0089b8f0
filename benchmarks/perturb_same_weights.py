"""scGen's peer and scneural predicting from the *same* trained weights (Kang IFN-beta).

``benchmarks/perturb.py`` compares two trained models, so a gap mixes training and
prediction. This script separates them: the ``scgen`` 2.1.0 peer trains as in
``perturb.py`` and saves its weights; the weights are loaded into
:class:`scneural.models.ScGen` (the same architecture: 2 x 800 hidden units with batch
norm, LeakyReLU and dropout, latent 100, linear output), and ``sn.tl.perturb(model=...)``
predicts from them with each ``delta_cells`` mode. With identical weights, any difference
from the peer's own prediction comes from the latent arithmetic alone.

Usage::

    PYTHONPATH=src python benchmarks/perturb_same_weights.py --types B --seeds 0 1 2 3

Same protocol and scores as ``perturb.py`` (R² of per-gene means over all genes and the
top-100 DE genes).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd
import torch
from _report import markdown
from perturb import (
    CELL_TYPE,
    CONDITION,
    TYPES,
    hold_out,
    perturb_call,
    run_peer,
    scores,
    setup_peer,
    write_input,
)

import scneural as sn
from scneural.models import ScGen


def load_peer_weights(model: ScGen, path: Path) -> None:
    """Copy the peer's ``state_dict`` into ``model.module``.

    The two modules hold the same tensors in the same order (encoder blocks, latent mean
    and variance heads, decoder blocks, output layer) under other names, so they are
    matched by position; every shape is checked.
    """
    theirs = torch.load(path, map_location="cpu")
    ours = model.module.state_dict()
    if len(theirs) != len(ours):
        raise ValueError(f"peer state has {len(theirs)} tensors, ours {len(ours)}")
    mapped = {}
    for (name, mine), (their_name, tensor) in zip(ours.items(), theirs.items(), strict=True):
        if mine.shape != tensor.shape:
            raise ValueError(f"{their_name} {tuple(tensor.shape)} does not fit {name}")
        mapped[name] = tensor
    model.module.load_state_dict(mapped)
    model.module.eval()
    model.is_trained_ = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--types", nargs="+", default=TYPES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--peer-venv", default="/tmp/scgen_peer_venv")
    parser.add_argument("--workdir", default="/tmp/scneural_perturb_same_weights")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    peer_python = setup_peer(args.peer_venv)
    adata, data_path = write_input(workdir)
    rows = []
    for seed in args.seeds:
        out = workdir / f"seed{seed}"
        for cell_type in args.types:
            peer = run_peer(
                peer_python, data_path, out, cell_type, args.threads, seed, save_weights=True
            )
            real, train, _, de = hold_out(adata, cell_type)
            rows.append({"type": cell_type, "seed": seed, "prediction": "peer's own"})
            rows[-1].update(scores(real, peer["X"], de))
            ScGen.setup_anndata(train, condition_key=CONDITION, cell_type_key=CELL_TYPE)
            model = ScGen(train)
            load_peer_weights(model, out / f"{cell_type}_weights.pt")
            for mode in ("all", "paired"):
                pred = sn.tl.perturb(
                    train.copy(), model=model, delta_cells=mode, **perturb_call(cell_type, seed)
                )
                rows.append({"type": cell_type, "seed": seed, "prediction": f"scneural, {mode!r}"})
                rows[-1].update(scores(real, pred.X, de))
            print(rows[-3:], flush=True)

    table = pd.DataFrame(rows)
    if args.json:
        Path(args.json).write_text(table.to_json(orient="records", indent=1))
    metrics = ["r2_all", "r2_top100"]
    print(markdown(table[["type", "seed", "prediction", *metrics]]))
    print()
    mean = table.groupby(["type", "prediction"], sort=False)[metrics].mean().reset_index()
    mean.insert(2, "seeds", len(args.seeds))
    print(f"Mean over seeds {args.seeds}:")
    print(markdown(mean))


if __name__ == "__main__":
    sys.exit(main())
