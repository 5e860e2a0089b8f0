"""Training options shared by the models (scvi-tools conventions)."""

from __future__ import annotations

import numpy as np
import scanpy as sc

import scneural as sn
from scneural.models import Classifier, ScGen


def _lognorm(seed: int = 0):
    adata = sn.datasets.synthetic_counts(n_obs=300, n_vars=60, n_groups=3, seed=seed)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


def test_classifier_train_size_one_trains_on_every_cell_without_validation():
    """train_size=1.0 (no validation set) trains for max_epochs and reports no validation."""
    adata = _lognorm()
    model = sn.tl.classify(adata, "group", max_epochs=4, train_size=1.0, enable_progress_bar=False)
    assert len(model.validation_indices) == 0
    assert len(model.train_indices) == adata.n_obs
    assert len(model.history["train_loss"]) == 4
    assert not any(name.endswith("validation") for name in model.history)
    assert adata.uns["classify"]["validation"] == {"n_cells": 0}
    accuracy = np.mean(adata.obs["classify_label"].astype(str) == adata.obs["group"].astype(str))
    assert accuracy > 0.9


def test_classifier_default_holds_out_five_percent_for_validation():
    adata = _lognorm(seed=1)
    model = sn.tl.classify(adata, "group", max_epochs=2, enable_progress_bar=False)
    assert len(model.validation_indices) == round(0.05 * adata.n_obs)
    assert len(model.train_indices) + len(model.validation_indices) == adata.n_obs
    assert isinstance(model, Classifier)
    assert adata.uns["classify"]["validation"]["n_cells"] == len(model.validation_indices)


def test_scgen_train_size_one_trains_without_validation():
    adata = sn.datasets.synthetic_perturbation(seed=0)
    ScGen.setup_anndata(adata, "condition", "cell_type")
    model = ScGen(adata, n_hidden=16, n_latent=4)
    model.train(max_epochs=3, train_size=1.0, enable_progress_bar=False)
    assert len(model.validation_indices) == 0
    assert len(model.history["train_loss"]) == 3
    assert "validation_loss" not in model.history
