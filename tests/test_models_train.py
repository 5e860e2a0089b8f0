"""Training options shared by the models (scvi-tools conventions)."""

from __future__ import annotations

import numpy as np
import scanpy as sc

import scneural as sn
from scneural.models import Classifier, ImageExpressionModel, ScGen


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


def test_scgen_default_holds_out_five_percent_for_validation():
    adata = sn.datasets.synthetic_perturbation(seed=0)
    ScGen.setup_anndata(adata, "condition", "cell_type")
    model = ScGen(adata, n_hidden=16, n_latent=4)
    model.train(max_epochs=2, enable_progress_bar=False)
    assert len(model.validation_indices) == round(0.05 * adata.n_obs)
    assert len(model.train_indices) + len(model.validation_indices) == adata.n_obs
    assert "validation_loss" in model.history


def _image_model(n_obs: int = 40, size: int = 8):
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 255, size=(n_obs, size * size * 3), dtype=np.uint8)
    adata = sc.AnnData(rng.normal(size=(n_obs, 3)).astype(np.float32), obsm={"p": patches})
    ImageExpressionModel.setup_anndata(adata, patches_key="p")
    return ImageExpressionModel(adata, n_channels=(4,), n_latent=8)


def test_image_model_train_size_none_validates_like_scvi():
    """train_size=None is scvi-tools' default split, and that validation set is used."""
    model = _image_model()
    model.train(max_epochs=2, train_size=None, batch_size=16, enable_progress_bar=False)
    assert len(model.validation_indices) > 0
    assert "validation_loss" in model.history
    # early stopping and the learning-rate schedule watch that validation loss
    assert any(type(cb).__name__.endswith("EarlyStopping") for cb in model.trainer.callbacks)
    assert model.trainer.lightning_module.reduce_lr_on_plateau


def test_image_model_train_size_one_has_no_validation():
    model = _image_model()
    model.train(max_epochs=2, train_size=1.0, batch_size=16, enable_progress_bar=False)
    assert len(model.validation_indices) == 0
    assert "validation_loss" not in model.history
    assert not any(type(cb).__name__.endswith("EarlyStopping") for cb in model.trainer.callbacks)
