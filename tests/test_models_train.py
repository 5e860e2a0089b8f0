"""Training options shared by the models (scvi-tools conventions)."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField

import scneural as sn
from conftest import assert_unchanged, snapshot
from scneural.models import Classifier, ImageExpressionModel, ScGen
from scneural.models._base import (
    ScneuralModelMixin,
    SingleCellSafeDataSplitter,
    records_training,
)
from scneural.models.classifier import ClassifierTrainingPlan
from scneural.models.scgen import ScGenTrainingPlan


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


def test_splitter_drops_the_last_batch_only_when_it_has_one_cell():
    def drop(n_obs, train_size=0.95, batch_size=128, datasplitter_kwargs=None):
        manager = AnnDataManager(fields=[LayerField(REGISTRY_KEYS.X_KEY, None)])
        manager.register_fields(AnnData(np.zeros((n_obs, 2), dtype=np.float32)))
        splitter = SingleCellSafeDataSplitter(
            manager, train_size, batch_size=batch_size, **(datasplitter_kwargs or {})
        )
        return splitter.drop_last

    assert drop(135)  # ceil(0.95 * 135) = 129 = 128 + 1
    assert not drop(136) and not drop(134) and not drop(120)
    assert drop(129, train_size=1.0)
    assert not drop(135, train_size=None)  # scvi-tools moves the cell to validation itself
    assert not drop(135, datasplitter_kwargs={"drop_last": False})  # the caller's choice wins


def test_splitter_refuses_loader_arguments_no_step_takes():
    check = SingleCellSafeDataSplitter.check_loader_kwargs
    check({"num_workers": 0, "drop_last": True, "pin_memory": False, "batch_size": 64})
    with pytest.raises(TypeError, match=r"'num_worker' \(did you mean 'num_workers'\?\)"):
        check({"num_worker": 2})
    with pytest.raises(TypeError, match="'shuffle': the training loader always shuffles"):
        check({"shuffle": False})
    with pytest.raises(TypeError, match="'batch_sampler': .*pass sampler= instead") as error:
        check({"batch_sampler": None, "bogus": 1})
    assert "'bogus', which scvi-tools' data splitter and loaders do not take" in str(error.value)
    assert "persistent_workers" in str(error.value)  # the names it takes are listed


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("train_size", [0, 0.0, -0.5, 1.5, float("nan"), "0.9", True])
def test_train_size_outside_zero_one_is_refused(backend, train_size):
    """scvi-tools' splitter read train_size=0 as "not given" and trained on 90% of the
    cells, while uns recorded 0; a train_size above 1 failed in scvi-tools' words."""
    adata = _lognorm()
    before = snapshot(adata)
    with pytest.raises(ValueError, match=r"train_size must be in \(0, 1\], the fraction"):
        sn.tl.classify(adata, "group", backend=backend, max_epochs=1, train_size=train_size)
    assert_unchanged(adata, before)


def test_splitter_refuses_datasplitter_kwargs_train_passes_itself():
    check = SingleCellSafeDataSplitter.check_train_kwargs
    check(None)
    check({"num_workers": 0, "drop_last": True})
    with pytest.raises(TypeError, match=r"'batch_size', which train takes itself: pass batch_s"):
        check({"batch_size": 64})
    with pytest.raises(TypeError, match="'iter_ndarray', which the JAX models' train sets"):
        check({"num_workers": 0, "iter_ndarray": True})
    with pytest.raises(TypeError, match=r"datasplitter_kwargs must be a dict .*got \['num_w"):
        check(["num_workers"])


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_last_minibatch_of_one_cell_trains(backend):
    """With the default minibatch (128) and 5% validation, 135 cells leave one training cell
    in the last minibatch; batch norm used to fail on it in the middle of training."""
    adata = sn.datasets.synthetic_counts(n_obs=135, n_vars=30, n_groups=3, seed=0)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    model = sn.tl.classify(
        adata, "group", backend=backend, max_epochs=2, n_hidden=(8,), enable_progress_bar=False
    )
    assert len(model.history["train_loss"]) == 2
    assert adata.obs["classify_label"].notna().all()


def _scgen(n_hidden: int = 16) -> ScGen:
    """A small scGen on synthetic perturbation data (``model.adata`` holds the cells)."""
    adata = sn.datasets.synthetic_perturbation(seed=0)
    ScGen.setup_anndata(adata, "condition", "cell_type")
    return ScGen(adata, n_hidden=n_hidden, n_latent=4)


def test_scgen_train_size_one_trains_without_validation():
    model = _scgen()
    model.train(max_epochs=3, train_size=1.0, enable_progress_bar=False)
    assert len(model.validation_indices) == 0
    assert len(model.history["train_loss"]) == 3
    assert "validation_loss" not in model.history


def test_scgen_default_holds_out_five_percent_for_validation():
    model = _scgen()
    model.train(max_epochs=2, enable_progress_bar=False)
    assert len(model.validation_indices) == round(0.05 * model.adata.n_obs)
    assert len(model.train_indices) + len(model.validation_indices) == model.adata.n_obs
    assert "validation_loss" in model.history


@pytest.mark.parametrize(
    ("plan_cls", "implementation"),
    [(ScGenTrainingPlan, "fused"), (ClassifierTrainingPlan, "foreach")],
)
@pytest.mark.parametrize("optimizer", ["Adam", "AdamW"])
def test_plans_build_scvi_adam_with_a_fast_kernel(plan_cls, implementation, optimizer):
    """scvi-tools' Adam/AdamW and their settings, with only the kernel switched."""
    plan = plan_cls(_scgen().module, optimizer=optimizer, lr=2e-3, eps=1e-7, weight_decay=1e-4)
    adam = plan.configure_optimizers()["optimizer"]
    assert type(adam) is getattr(torch.optim, optimizer)
    assert adam.defaults[implementation] is True
    assert (adam.defaults["lr"], adam.defaults["eps"], adam.defaults["weight_decay"]) == (
        2e-3,
        1e-7,
        1e-4,
    )


def test_fused_adam_falls_back_to_foreach_under_mixed_precision():
    """Lightning cannot clip a fused optimizer's gradients under mixed precision."""
    from lightning.pytorch import Trainer

    plan = ScGenTrainingPlan(_scgen().module)
    plan.trainer = Trainer(accelerator="cpu", precision="bf16-mixed", logger=False)
    adam = plan.configure_optimizers()["optimizer"]
    assert adam.defaults["foreach"] is True and not adam.defaults["fused"]


def test_fast_adam_leaves_other_optimizers_to_scvi():
    plan = ScGenTrainingPlan(
        _scgen().module,
        optimizer="Custom",
        optimizer_creator=lambda params: torch.optim.SGD(params, lr=0.1),
    )
    sgd = plan.configure_optimizers()["optimizer"]
    assert type(sgd) is torch.optim.SGD
    assert sgd.defaults["lr"] == 0.1


def test_scgen_trains_with_fused_adam_and_clipping():
    """The model's plan is the fused one, and it trains (loss falls) with the default clipping."""
    model = _scgen(n_hidden=32)
    assert model._training_plan_cls is ScGenTrainingPlan
    model.train(max_epochs=6, early_stopping=False, enable_progress_bar=False)
    loss = model.history["train_loss"].to_numpy().ravel()
    assert len(loss) == 6 and loss[-1] < loss[0]


def test_tensorboard_logger_writes_under_default_root_dir(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.chdir(tmp_path)
    model = _scgen()
    runs = tmp_path / "runs"
    model.train(
        max_epochs=2, logger="tensorboard", default_root_dir=runs, enable_progress_bar=False
    )
    assert list((runs / "lightning_logs" / "version_0").glob("events.out.tfevents.*"))
    assert not (tmp_path / "lightning_logs").exists()
    assert len(model.history["train_loss"]) == 2


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


class _Recorded(ScneuralModelMixin):
    @records_training
    def train(self, max_epochs=10, *, lr=1e-3, plan_kwargs=None, **kwargs):
        return max_epochs

    @records_training
    def pretrain(self, max_epochs=None, **trainer_kwargs):
        if max_epochs == 0:
            raise ValueError("max_epochs must be positive")
        return max_epochs


def test_records_training_keeps_every_argument_with_its_defaults():
    model = _Recorded()
    assert model.train(5, callbacks=[object()], plan_kwargs={"eps": np.float32(0.5)}) == 5
    model.pretrain(devices=np.int64(2))
    train = model.training_params_["train"]
    assert train["max_epochs"] == 5 and train["lr"] == 1e-3  # positional and default
    assert train["plan_kwargs"] == {"eps": 0.5} and type(train["plan_kwargs"]["eps"]) is float
    # extra keyword arguments are merged in; objects are kept as their repr
    assert train["callbacks"][0].startswith("<object object")
    assert model.training_params_["pretrain"] == {"max_epochs": None, "devices": 2}
    # arrays: a summary instead of a truncated repr; a 0-d array is its number
    model.train(labels=np.zeros(5000, dtype=np.int64), lr=torch.tensor(0.5))
    assert model.training_params_["train"]["labels"] == "ndarray of shape (5000,), dtype int64"
    assert model.training_params_["train"]["lr"] == 0.5
    # a later call replaces its own method's record only
    model.train(lr=0.1)
    assert model.training_params_["train"] == {"max_epochs": 10, "lr": 0.1, "plan_kwargs": None}
    assert "pretrain" in model.training_params_
    # a call that fails leaves the record of the last one that ran
    with pytest.raises(ValueError, match="max_epochs"):
        model.pretrain(0)
    assert model.training_params_["pretrain"] == {"max_epochs": None, "devices": 2}
