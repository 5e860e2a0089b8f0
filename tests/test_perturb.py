"""Tests of sn.tl.perturb, the ScGen model and the perturbation plots."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scvi
import torch
from lightning.pytorch.callbacks import Callback

import scneural as sn
from conftest import assert_unchanged, load_real, log_normalise, record_train_kwargs, snapshot
from scneural.models import ScGenModule

SMALL = {"n_hidden": 128, "n_latent": 16, "accelerator": "cpu", "enable_progress_bar": False}
ARGS = {
    "condition_key": "condition",
    "control": "control",
    "perturbed": "stimulated",
    "cell_type_key": "cell_type",
}


@pytest.fixture(scope="module")
def full():
    """Log-normalised synthetic data: 4 types, control and stimulated, 20 response genes."""
    return log_normalise(sn.datasets.synthetic_perturbation(n_obs=500, n_vars=80, seed=0))


def _held_out(adata, cell_type="t0"):
    return (
        (adata.obs["cell_type"] == cell_type) & (adata.obs["condition"] == "stimulated")
    ).to_numpy()


def _control(adata, cell_type="t0"):
    return (
        (adata.obs["cell_type"] == cell_type) & (adata.obs["condition"] == "control")
    ).to_numpy()


# every tl test runs once per backend (the `backend` fixture of conftest.py, torch and jax)
MODEL_CLASS = {"torch": "ScGen", "jax": "JaxScGen"}


def _model_class(backend):
    return getattr(sn.models, MODEL_CLASS[backend])


@pytest.fixture(scope="module")
def trained(full, backend):
    # at 50 epochs the R² gain over "control unchanged" still varies from 0.08 to 0.32
    # between seeds 0-4, for both backends; at 100 it is 0.24-0.40 (0.32/0.37 at seed 0)
    train = full[~_held_out(full)].copy()
    pred, model = sn.tl.perturb(
        train,
        predict="t0",
        backend=backend,
        max_epochs=100,
        return_model=True,
        **ARGS,
        **SMALL,
    )
    return train, pred, model


@pytest.fixture
def train_data(full):
    return full[~_held_out(full)].copy()


def test_module_is_scgen_architecture():
    module = ScGenModule(50)
    linears = [m for m in module.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [lin.out_features for lin in linears] == [800, 800]
    assert module.z_mean.out_features == 100
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in module.decoder.modules())
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in module.encoder.modules())
    dropouts = [m.p for m in module.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(p == 0.2 for p in dropouts)
    assert module.kl_weight == 5e-5


def test_loss_does_not_depend_on_batch_size():
    torch.manual_seed(0)
    module = ScGenModule(20, n_hidden=16, n_latent=4).eval()
    x = torch.rand(64, 20)
    losses = []
    with torch.no_grad():
        for n in (16, 64):
            _, _, out = module({"X": x[:16].repeat(n // 16, 1)})
            losses.append(float(out.loss))
        _, _, out = module({"X": x})
    # a batch of 4 copies of 16 cells has (up to z-sampling noise) the loss of the 16 cells
    assert losses[0] == pytest.approx(losses[1], rel=0.05)
    reconstruction = out.reconstruction_loss["reconstruction_loss"]
    kl = out.kl_local["kl_local"]
    assert float(out.loss) == pytest.approx(
        float(reconstruction.mean() + 5e-5 * kl.mean()), rel=1e-5
    )


def test_predicted_anndata_shapes_and_names(trained, full, backend):
    train, pred, model = trained
    assert type(model) is _model_class(backend)
    control = train[_control(train)]
    assert pred.n_obs == control.n_obs
    assert list(pred.var_names) == list(train.var_names)
    pd.testing.assert_frame_equal(pred.var, train.var)
    assert (pred.obs["condition"] == "predicted").all()
    assert list(pred.obs["control_cell"]) == list(control.obs_names)
    assert all(name.endswith("-predicted") for name in pred.obs_names)
    assert (pred.obs["cell_type"].astype(str) == "t0").all()
    # as a subset of an AnnData: no category without cells (sc.concat, groupby)
    assert list(pred.obs["cell_type"].cat.categories) == ["t0"]
    assert pred.X.dtype == np.float32
    assert pred.obsm["X_perturb"].shape == (pred.n_obs, 16)
    assert train.obsm["X_perturb"].shape == (train.n_obs, 16)
    uns = train.uns["perturb"]
    assert {"params", "history", "delta", "delta_cell_types", "n_predicted"} <= set(uns)
    assert uns["delta"].shape == (16,)
    # scGen's delta: t0's control cells enter the control mean, though t0 is held out
    assert sorted(uns["delta_cell_types"]) == ["t0", "t1", "t2", "t3"]
    assert uns["params"]["delta_cells"] == "all"
    assert uns["params"]["predict"] == "t0" and uns["params"]["kl_weight"] == 5e-5
    assert uns["params"]["backend"] == backend == model.backend
    assert len(uns["history"]["train_loss"]) >= 1
    assert "X_perturb" not in full.obsm


def test_prediction_beats_control_unchanged(trained, full):
    _, pred, _ = trained
    real = full[_held_out(full)]
    control = full[_control(full)]
    truth = np.asarray(real.X.mean(axis=0)).ravel()
    err_pred = np.abs(np.asarray(pred.X.mean(axis=0)).ravel() - truth)
    err_ctrl = np.abs(np.asarray(control.X.mean(axis=0)).ravel() - truth)
    response = full.var["response"].to_numpy()
    # scGen's measure: R² of per-gene means, much higher than "nothing changes"
    assert sn.metrics.r2_mean(real, pred) > sn.metrics.r2_mean(real, control) + 0.25
    # and the genes that respond move towards their true means
    assert err_pred[response].mean() < 0.85 * err_ctrl[response].mean()


def test_results_survive_h5ad(trained, tmp_path):
    train, pred, _ = trained
    train.write_h5ad(tmp_path / "train.h5ad")
    pred.write_h5ad(tmp_path / "pred.h5ad")
    back = sc.read_h5ad(tmp_path / "train.h5ad")
    np.testing.assert_allclose(back.uns["perturb"]["delta"], train.uns["perturb"]["delta"])
    ax = sn.pl.training_history(back, "perturb", metrics=["loss"], show=False)
    assert len(ax) >= 1


def test_params_record_the_training_defaults(trained, tmp_path):
    train, _, model = trained
    training = train.uns["perturb"]["params"]["training"]["train"]
    # what the tool passed, and the model's defaults it did not pass
    assert training["max_epochs"] == 100 and training["accelerator"] == "cpu"
    assert training["train_size"] == 0.95 and training["max_grad_norm"] == 50.0
    assert training["batch_size"] == 64 and training["early_stopping"] is True
    assert model.training_record()["train"]["lr"] == training["lr"] == 1e-3
    assert set(model.training_record()["train"]) == set(training)
    train.write_h5ad(tmp_path / "train.h5ad")
    back = sc.read_h5ad(tmp_path / "train.h5ad")
    assert back.uns["perturb"]["params"]["training"]["train"]["train_size"] == 0.95


def test_determinism_with_seed(train_data, backend):
    runs = []
    for seed in (3, 3, 4):
        adata = train_data.copy()
        pred = sn.tl.perturb(
            adata, predict="t0", backend=backend, max_epochs=3, random_state=seed, **ARGS, **SMALL
        )
        runs.append((pred.X, adata.obsm["X_perturb"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    # and the seed matters
    assert not np.allclose(runs[0][1], runs[2][1])


def test_model_reuse_and_save_load(trained, backend, tmp_path):
    train, pred, model = trained
    again = train.copy()
    pred_reused = sn.tl.perturb(again, predict="t0", model=model, **ARGS)
    np.testing.assert_allclose(pred_reused.X, pred.X, rtol=1e-5, atol=1e-5)
    assert again.uns["perturb"]["params"]["model_reused"] is True
    # the history of the reused model's training, as params['training'] (and classify)
    history = again.uns["perturb"]["history"]
    np.testing.assert_array_equal(
        history["train_loss"], train.uns["perturb"]["history"]["train_loss"]
    )
    assert again.uns["perturb"]["params"]["backend"] == backend
    model.save(tmp_path / "scgen", save_anndata=True)
    loaded = _model_class(backend).load(tmp_path / "scgen", accelerator="cpu")
    assert type(loaded) is type(model) and loaded.is_trained
    assert loaded.input_source_ == model.input_source_
    assert loaded.training_record() == model.training_record()
    # a reused model's results still say how it was trained
    assert again.uns["perturb"]["params"]["training"]["train"]["max_epochs"] == 100
    third = train.copy()
    pred_loaded = sn.tl.perturb(third, predict="t0", model=loaded, **ARGS)
    np.testing.assert_allclose(pred_loaded.X, pred.X, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(third.obsm["X_perturb"], train.obsm["X_perturb"], atol=1e-5)


def test_reuse_on_data_missing_a_gene_writes_h5ad(trained, tmp_path):
    train, pred, model = trained
    query = train[:, 1:].copy()  # the model's first gene is missing: filled with zeros
    query.var["kind"] = "gene"
    query.var["flag"] = True
    with pytest.warns(UserWarning, match="1 of the model's 80 genes are missing"):
        pred_query = sn.tl.perturb(query, predict="t0", model=model, **ARGS)
    assert list(pred_query.var_names) == list(pred.var_names)
    missing = pred.var_names[0]
    assert pred_query.var.loc[missing].isna().all()
    assert pred_query.var["flag"].dtype == "boolean"
    assert (pred_query.var["kind"].drop(missing) == "gene").all()
    pred_query.write_h5ad(tmp_path / "pred.h5ad")
    back = sc.read_h5ad(tmp_path / "pred.h5ad")
    assert back.var["flag"].drop(missing).all()
    np.testing.assert_allclose(back.X, pred_query.X)


def test_predict_control_cells_directly_and_restrict(trained, full):
    train, pred, model = trained
    control = full[_control(full)]
    # genes in another order: aligned to the model's
    shuffled = control[:, control.var_names[::-1]].copy()
    adata = train.copy()
    direct = sn.tl.perturb(adata, predict=shuffled, model=model, **ARGS)
    np.testing.assert_allclose(direct.X, pred.X, rtol=1e-4, atol=1e-4)
    assert list(direct.var_names) == list(train.var_names)
    sn.tl.perturb(adata, predict="t0", model=model, restrict_arithmetic_to=["t1"], **ARGS)
    assert list(adata.uns["perturb"]["delta_cell_types"]) == ["t1"]
    assert not np.allclose(adata.uns["perturb"]["delta"], train.uns["perturb"]["delta"])
    # the model API gives the same prediction (clipped at 0 as the tool does on these data)
    model_pred, delta = model.predict(
        "control", "stimulated", cell_type="t0", adata=train, clip_min=0.0
    )
    np.testing.assert_allclose(model_pred.X, pred.X, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(delta, train.uns["perturb"]["delta"], rtol=1e-5)
    # and the same obs: none of scvi-tools' registration columns of the training data
    assert list(model_pred.obs.columns) == list(pred.obs.columns)


def _centred(adata):
    """A copy of ``adata`` with each gene's mean taken off (like scaled data: negative values)."""
    centred = adata.copy()
    centred.X = (centred.X - centred.X.mean(axis=0)).astype(np.float32)
    return centred


def test_predictions_of_log_normalised_data_are_not_negative(trained):
    """The decoder's linear output puts many values below 0; log-normalised expression has
    none (they gave scanpy's log fold changes NaN), while scaled data keep theirs."""
    train, pred, model = trained
    shifted = model.decode(pred.obsm["X_perturb"])
    np.testing.assert_allclose(pred.X, np.maximum(shifted, 0), atol=1e-5)
    assert pred.X.min() >= 0.0 and train.uns["perturb"]["params"]["clipped_at_zero"]
    scaled = _centred(train)
    out = sn.tl.perturb(scaled, predict="t0", **ARGS, **{**SMALL, "max_epochs": 2})
    assert out.X.min() < 0 and not scaled.uns["perturb"]["params"]["clipped_at_zero"]


def test_clip_at_zero_overrides_the_choice_from_the_input(trained):
    """``clip_at_zero=False`` keeps the decoder's output on log-normalised data; ``True``
    clips scaled data too; anything but a bool or None is refused before any work."""
    train, pred, model = trained
    adata = train.copy()
    raw = sn.tl.perturb(adata, predict="t0", model=model, clip_at_zero=False, **ARGS)
    np.testing.assert_allclose(raw.X, model.decode(pred.obsm["X_perturb"]), atol=1e-5)
    assert adata.uns["perturb"]["params"]["clipped_at_zero"] is False
    scaled = _centred(train)
    kept = sn.tl.perturb(scaled.copy(), predict="t0", model=model, **ARGS)
    clipped = sn.tl.perturb(scaled, predict="t0", model=model, clip_at_zero=True, **ARGS)
    assert kept.X.min() < 0  # scaled input: the decoded values go below 0 ...
    np.testing.assert_allclose(clipped.X, np.maximum(kept.X, 0), atol=1e-6)  # ... until clipped
    assert scaled.uns["perturb"]["params"]["clipped_at_zero"] is True
    adata = train.copy()
    before = snapshot(adata)
    with pytest.raises(TypeError, match="clip_at_zero must be True, False or None"):
        sn.tl.perturb(adata, predict="t0", model=model, clip_at_zero="yes", **ARGS)
    assert_unchanged(adata, before)


def test_residual_prediction_adds_the_decoded_change(trained, full):
    train, pred, model = trained
    is_control = _control(train)
    control = train.X[is_control]
    control = np.asarray(control.todense() if hasattr(control, "todense") else control)
    adata = train.copy()
    residual = sn.tl.perturb(adata, predict="t0", model=model, residual=True, **ARGS)
    assert adata.uns["perturb"]["params"]["residual"] is True
    assert residual.X.dtype == np.float32 and residual.shape == pred.shape
    assert list(residual.obs_names) == list(pred.obs_names)
    # control + decode(z + delta) - decode(z): the same change as scGen's prediction
    # (both clipped at 0, as log-normalised data)
    reconstruction = model.decode(train.obsm["X_perturb"][is_control])
    shifted = model.decode(pred.obsm["X_perturb"])
    np.testing.assert_allclose(pred.X, np.maximum(shifted, 0), atol=1e-5)
    np.testing.assert_allclose(
        residual.X, np.maximum(control + shifted - reconstruction, 0), atol=1e-4
    )
    # each predicted cell keeps its control cell's deviations, so the per-gene variances
    # follow the real ones better than the smooth decoder output does
    real = full[_held_out(full)]
    r2_var = {
        name: sn.metrics.perturbation_r2(real, p)["r2_var_all"]
        for name, p in (("residual", residual), ("decoded", pred))
    }
    assert r2_var["residual"] > r2_var["decoded"], r2_var
    assert (
        sn.metrics.r2_mean(real, residual) > sn.metrics.r2_mean(real, full[_control(full)]) + 0.25
    )
    # the model API and control cells passed directly give the same prediction
    model_pred, _ = model.predict(
        "control", "stimulated", cell_type="t0", adata=train, residual=True, clip_min=0.0
    )
    np.testing.assert_allclose(model_pred.X, residual.X, rtol=1e-5, atol=1e-5)
    direct = sn.tl.perturb(
        train.copy(), predict=full[_control(full)], model=model, residual=True, **ARGS
    )
    np.testing.assert_allclose(direct.X, residual.X, rtol=1e-4, atol=1e-4)


def test_balance_modes_are_seeded(trained):
    _, _, model = trained
    first = model.latent_delta("control", "stimulated", random_state=1)[0]
    second = model.latent_delta("control", "stimulated", random_state=1)[0]
    other = model.latent_delta("control", "stimulated", random_state=2)[0]
    exact = model.latent_delta("control", "stimulated", balance="mean")[0]
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    assert np.linalg.norm(first - exact) < 0.5 * np.linalg.norm(exact)


def test_delta_cells_all_or_paired(trained):
    """delta_cells="all" averages every type of a condition, "paired" only types in both."""
    train, pred, model = trained
    z = train.obsm["X_perturb"]
    types = train.obs["cell_type"].astype(str).to_numpy()
    conditions = train.obs["condition"].astype(str).to_numpy()

    def mean_of_type_means(condition, kinds):
        return np.mean([z[(types == t) & (conditions == condition)].mean(0) for t in kinds], 0)

    paired = ["t1", "t2", "t3"]  # t0's stimulated cells are held out
    expected = {
        "all": mean_of_type_means("stimulated", paired)
        - mean_of_type_means("control", ["t0", *paired]),
        "paired": mean_of_type_means("stimulated", paired) - mean_of_type_means("control", paired),
    }
    for mode, cell_types in (("all", ["t0", *paired]), ("paired", paired)):
        delta, used = model.latent_delta(
            "control", "stimulated", adata=train, balance="mean", delta_cells=mode
        )
        assert used == cell_types
        np.testing.assert_allclose(delta, expected[mode], rtol=1e-4, atol=1e-5)
    assert not np.allclose(expected["all"], expected["paired"], atol=1e-3)
    # the tool passes the mode on: "paired" changes the delta and the prediction
    adata = train.copy()
    paired_pred = sn.tl.perturb(adata, predict="t0", model=model, delta_cells="paired", **ARGS)
    assert list(adata.uns["perturb"]["delta_cell_types"]) == paired
    assert adata.uns["perturb"]["params"]["delta_cells"] == "paired"
    assert not np.allclose(paired_pred.X, pred.X, atol=1e-4)
    with pytest.raises(ValueError, match="delta_cells must be"):
        model.latent_delta("control", "stimulated", delta_cells="both")


def test_batch_removal_keeps_cell_names(full, backend):
    model_cls = _model_class(backend)
    adata = full.copy()
    rng = np.random.default_rng(12345)  # not the data's seed: batches independent of types
    adata.obs["batch"] = pd.Categorical(rng.choice(["a", "b"], size=adata.n_obs))
    adata = adata[rng.permutation(adata.n_obs)].copy()
    model_cls.setup_anndata(adata, "condition", "cell_type", batch_key="batch")
    model = model_cls(adata, n_hidden=32, n_latent=4)
    model.train(max_epochs=2, accelerator="cpu", enable_progress_bar=False)
    corrected = model.batch_removal()
    assert list(corrected.obs_names) == list(adata.obs_names)
    pd.testing.assert_frame_equal(corrected.obs, adata.obs)
    assert corrected.shape == adata.shape and corrected.obsm["latent"].shape == (adata.n_obs, 4)
    latent = corrected.obsm["latent"]
    for cell_type in adata.obs["cell_type"].cat.categories:
        in_type = (adata.obs["cell_type"] == cell_type).to_numpy()
        means = [latent[in_type & (adata.obs["batch"] == b).to_numpy()].mean(axis=0) for b in "ab"]
        np.testing.assert_allclose(means[0], means[1], atol=1e-4)
    model_cls.setup_anndata(adata, "condition", "cell_type")
    no_batch = model_cls(adata, n_hidden=16, n_latent=4)
    with pytest.raises(ValueError, match="batch_key"):
        no_batch.batch_removal()


def test_batch_size_sets_the_training_minibatch(train_data, backend, monkeypatch):
    """``batch_size=`` reaches the model's ``train`` (encoding/decoding keep large minibatches)."""
    seen = record_train_kwargs(monkeypatch, _model_class(backend))
    call = {**ARGS, "predict": "t0", "max_epochs": 1, **SMALL, "backend": backend}
    pred = sn.tl.perturb(train_data, batch_size=16, **call)
    assert seen["batch_size"] == 16
    assert train_data.uns["perturb"]["params"]["batch_size"] == 16
    assert pred.n_obs == int(_control(train_data).sum())


def _clip_setting(model):
    """The gradient-norm limit the last training used (Lightning's for torch, the plan's for JAX)."""
    if model.backend == "torch":
        return model.trainer.gradient_clip_val
    return model.trainer.lightning_module.max_norm


def test_max_grad_norm_clips_the_gradients(train_data, trained, backend):
    """The default clips at 50; ``max_grad_norm`` reaches the optimizer and changes the
    training; ``None`` trains without clipping."""
    assert _clip_setting(trained[2]) == 50.0
    predictions = {}
    for norm in (1e-3, None):
        call = {**ARGS, "predict": "t0", "max_epochs": 2, **SMALL, "backend": backend}
        pred, model = sn.tl.perturb(
            train_data.copy(), max_grad_norm=norm, return_model=True, **call
        )
        assert _clip_setting(model) == norm
        predictions[norm] = pred.X
    assert not np.allclose(predictions[1e-3], predictions[None])


def _weights(module, backend) -> list[np.ndarray]:
    """Every floating-point weight and statistic of a torch module or of a JAX module's
    training state, as numpy arrays in a fixed order."""
    if backend == "torch":
        return [
            v.detach().cpu().numpy().copy()
            for v in module.state_dict().values()
            if v.is_floating_point()
        ]
    import jax

    state = module.train_state
    return [
        np.asarray(leaf).copy() for leaf in jax.tree_util.tree_leaves((state.params, state.state))
    ]


class _StepWeights(Callback):
    """Records the weights after every training step."""

    def __init__(self, backend):
        self.backend, self.steps = backend, []

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.steps.append(_weights(pl_module.module, self.backend))


def test_ema_decay_keeps_the_moving_average_of_the_weights(train_data, backend):
    """With ``ema_decay`` the trained model holds the exponential moving average of the
    weights of every step (batch-norm statistics included), while the steps themselves, and
    so the weights being averaged, are those of a training without it (validation on the
    average swaps the step's weights back)."""
    runs = {}
    for decay in (None, 0.9):
        scvi.settings.seed = 0
        adata = train_data.copy()
        _model_class(backend).setup_anndata(adata, "condition", "cell_type")
        model = _model_class(backend)(adata, n_hidden=32, n_latent=8)
        steps = _StepWeights(backend)
        model.train(
            max_epochs=3,
            ema_decay=decay,
            callbacks=[steps],
            accelerator="cpu",
            enable_progress_bar=False,
        )
        assert model.training_params_["train"]["ema_decay"] == decay
        runs[decay] = steps.steps, _weights(model.module, backend)
    (plain_steps, plain_final), (ema_steps, ema_final) = runs[None], runs[0.9]
    assert len(ema_steps) == len(plain_steps) > 10
    for a, b in zip(plain_steps[-1], ema_steps[-1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(plain_steps[-1], plain_final):
        np.testing.assert_array_equal(a, b)
    average = ema_steps[0]
    for step in ema_steps[1:]:
        average = [0.9 * old + 0.1 * new for old, new in zip(average, step)]
    for expected, got in zip(average, ema_final):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(ema_steps[-1], ema_final))


def _bad(adata, error, match, backend="torch", **kwargs):
    before = snapshot(adata)
    call = {**ARGS, "predict": "t0", "max_epochs": 1, **SMALL, "backend": backend, **kwargs}
    with pytest.raises(error, match=match):
        sn.tl.perturb(adata, **call)
    assert_unchanged(adata, before)


def test_bad_inputs_leave_adata_unchanged(train_data, trained, backend):
    adata = train_data
    _bad(
        adata,
        backend=backend,
        error=ValueError,
        match="control='CTRL' is not a value",
        control="CTRL",
    )
    _bad(
        adata,
        backend=backend,
        error=ValueError,
        match="perturbed='STIM' is not a value",
        perturbed="STIM",
    )
    _bad(adata, backend=backend, error=ValueError, match="both 'control'", perturbed="control")
    _bad(adata, backend=backend, error=KeyError, match="condition_key='stim'", condition_key="stim")
    _bad(adata, backend=backend, error=KeyError, match="cell_type_key='type'", cell_type_key="type")
    _bad(
        adata, backend=backend, error=ValueError, match="cell type 'Mono' is not in", predict="Mono"
    )
    no_control = adata[~_control(adata, "t1")].copy()
    _bad(
        no_control,
        backend=backend,
        error=ValueError,
        match="'t1' has no control cells",
        predict="t1",
    )
    _bad(
        adata,
        backend=backend,
        error=ValueError,
        match="not in the data",
        restrict_arithmetic_to=["t9"],
    )
    _bad(
        adata,
        backend=backend,
        error=ValueError,
        match="no cell type has both",
        restrict_arithmetic_to=["t0"],
    )
    _bad(
        adata,
        backend=backend,
        error=TypeError,
        match="list of cell types",
        restrict_arithmetic_to="t1",
    )
    _bad(adata, backend=backend, error=ValueError, match="cell type '3' is not in", predict=3)
    _bad(adata, backend=backend, error=TypeError, match="predict must be", predict=["t0"])
    _bad(adata, backend=backend, error=TypeError, match="control must be", control=None)
    _bad(
        adata,
        backend=backend,
        error=ValueError,
        match="lacks 5 of the",
        predict=adata[:4, 5:].copy(),
    )
    _bad(adata, backend=backend, error=KeyError, match="layer='lognorm'", layer="lognorm")
    _bad(adata, backend=backend, error=TypeError, match="ScGen", model="model")
    _, _, model = trained
    _bad(adata, backend=backend, error=TypeError, match=type(model).__name__, model=model.module)
    _bad(adata, backend=backend, error=ValueError, match="balance=", balance="exact")
    _bad(adata, backend=backend, error=TypeError, match="residual must be", residual="yes")
    _bad(adata, backend=backend, error=ValueError, match="delta_cells", delta_cells="shared")
    _bad(adata, backend=backend, error=ValueError, match="batch_size must be", batch_size=0)
    _bad(adata, backend=backend, error=ValueError, match="an integer >= 2", batch_size=1)
    _bad(adata, backend=backend, error=ValueError, match="key_added must be", key_added="x/y")
    _bad(adata, backend=backend, error=ValueError, match="random_state must be", random_state=None)
    untyped = adata.copy()
    untyped.obs["cell_type"] = untyped.obs["cell_type"].astype(object)
    untyped.obs.iloc[:3, untyped.obs.columns.get_loc("cell_type")] = np.nan
    _bad(untyped, backend=backend, error=ValueError, match="missing \\(NaN\\) for 3 cells")
    _bad(adata, backend=backend, error=ValueError, match="max_grad_norm must be", max_grad_norm=0)
    for decay in (1.0, -0.1, "0.99"):
        _bad(adata, backend=backend, error=ValueError, match="ema_decay must be", ema_decay=decay)
    for argument, value in (("max_epochs", 0), ("n_latent", 0), ("n_hidden", 0), ("n_layers", 0)):
        match = f"{argument} must be an integer >= 1"
        _bad(adata, backend=backend, error=ValueError, match=match, **{argument: value})
    _bad(adata, backend=backend, error=ValueError, match="dropout_rate", dropout_rate=1.0)
    _bad(adata, backend=backend, error=ValueError, match="kl_weight must be", kl_weight=-1e-5)
    _bad(adata, error=ValueError, match="backend='tensorflow'", backend="tensorflow")
    broken = adata.copy()
    broken.X = broken.X.toarray() if hasattr(broken.X, "toarray") else broken.X.copy()
    broken.X[0, 0] = np.nan
    _bad(broken, backend=backend, error=ValueError, match="NaN")
    fresh = adata.copy()
    _model_class(backend).setup_anndata(fresh, "condition", "cell_type")
    untrained = _model_class(backend)(fresh, n_hidden=16, n_latent=4)
    _bad(adata, backend=backend, error=ValueError, match="not been trained", model=untrained)


def test_bad_predict_cells_fail_before_training(full, train_data, backend, monkeypatch):
    """A NaN in a predict= AnnData is reported before any training starts."""

    def no_training(*args, **kwargs):
        raise AssertionError("training started before predict= was checked")

    monkeypatch.setattr(_model_class(backend), "train", no_training)
    cells = full[_control(full)].copy()
    cells.X = cells.X.toarray() if hasattr(cells.X, "toarray") else cells.X.copy()
    cells.X[1, 2] = np.inf
    _bad(train_data, backend=backend, error=ValueError, match="predict= AnnData", predict=cells)


def test_warnings_raw_counts_and_not_held_out(full, trained):
    _, _, model = trained
    counts = sn.datasets.synthetic_perturbation(n_obs=500, n_vars=80, seed=0)
    with pytest.warns(UserWarning, match="raw counts"):
        sn.tl.perturb(counts[~_held_out(counts)].copy(), predict="t0", model=model, **ARGS)
    adata = full.copy()
    # a reused model was not trained here: the cells only enter the delta
    with pytest.warns(UserWarning, match="they are used in the delta, so this is not a held"):
        sn.tl.perturb(adata, predict="t0", model=model, **ARGS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        sn.tl.perturb(full[~_held_out(full)].copy(), predict="t0", model=model, **ARGS)


def test_reg_plots(trained, full):
    _, pred, _ = trained
    both = sc.concat([full[_held_out(full)], pred])
    top = sn.metrics.top_de_genes(
        full[full.obs["cell_type"] == "t0"], "condition", "stimulated", "control", n_genes=10
    )
    ax = sn.pl.reg_mean(
        both,
        condition_key="condition",
        x="stimulated",
        top_genes=top,
        gene_list=top[:2],
        show=False,
    )
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "R² all genes" in texts and "top 10 DE genes" in texts and top[0] in texts
    ax = sn.pl.reg_var(both, condition_key="condition", x="stimulated", show=False)
    assert ax.get_xlabel().startswith("variance")
    with pytest.raises(ValueError, match="not a value"):
        sn.pl.reg_mean(both, condition_key="condition", x="STIM", show=False)
    with pytest.raises(KeyError, match="gene_list"):
        sn.pl.reg_mean(
            both, condition_key="condition", x="stimulated", gene_list=["nope"], show=False
        )
    ax = sn.pl.reg_mean(
        both, condition_key="condition", x="stimulated", gene_list=top[0], show=False
    )
    assert [t.get_text() for t in ax.texts if t.get_text() == top[0]] == [top[0]]  # one label
    with pytest.raises(KeyError, match="layer='counts' is not in adata.layers"):
        sn.pl.reg_mean(both, condition_key="condition", x="stimulated", layer="counts", show=False)


@pytest.mark.data
def test_kang_cd14_mono_beats_control(backend):
    adata = log_normalise(load_real("kang_ifnb_sub"))
    sc.pp.highly_variable_genes(adata, n_top_genes=500, flavor="seurat")
    adata = adata[:, adata.var["highly_variable"]].copy()
    held = (
        (adata.obs["seurat_annotations"] == "CD14 Mono") & (adata.obs["stim"] == "STIM")
    ).to_numpy()
    train = adata[~held].copy()
    pred = sn.tl.perturb(
        train,
        condition_key="stim",
        control="CTRL",
        perturbed="STIM",
        cell_type_key="seurat_annotations",
        predict="CD14 Mono",
        backend=backend,
        max_epochs=15,
        n_hidden=128,
        n_latent=20,
        accelerator="cpu",
        enable_progress_bar=False,
    )
    control = train[
        (
            (train.obs["seurat_annotations"] == "CD14 Mono") & (train.obs["stim"] == "CTRL")
        ).to_numpy()
    ]
    assert sn.metrics.r2_mean(adata[held], pred) > sn.metrics.r2_mean(adata[held], control) + 0.1


def test_numeric_condition_and_type_values_are_matched_as_strings(full, monkeypatch):
    """obs columns of integers: control=0, perturbed=1 and predict=0 find their cells (the
    columns are compared as strings), before any training."""
    adata = full[~_held_out(full)].copy()
    adata.obs["dose"] = (adata.obs["condition"] == "stimulated").astype(int).to_numpy()
    adata.obs["type_id"] = adata.obs["cell_type"].cat.codes.to_numpy()  # t0 -> 0
    trained = []
    monkeypatch.setattr(sn.models.ScGen, "train", lambda *a, **k: trained.append(1))
    call = {"condition_key": "dose", "control": 0, "perturbed": 1, "cell_type_key": "type_id"}
    with pytest.raises(ValueError, match="control='2' is not a value of obs\\['dose'\\]"):
        sn.tl.perturb(adata, **{**call, "control": 2}, predict=0, **SMALL)
    assert not trained
    monkeypatch.undo()
    pred = sn.tl.perturb(adata, **call, predict=0, max_epochs=2, **SMALL)
    assert pred.n_obs == int(_control(adata).sum())
    assert adata.uns["perturb"]["params"]["control"] == "0"


def test_predict_anndata_is_read_from_the_models_layer(train_data):
    """Control cells passed as predict= are read from the layer the model reads: lacking
    it is an error (not a silent read of their X), and counts there get the counts
    warning that adata gets."""
    adata = train_data.copy()
    adata.layers["lognorm"] = adata.X.copy()
    controls = adata[(adata.obs["cell_type"] == "t0") & (adata.obs["condition"] == "control")]
    cells = controls.copy()
    del cells.layers["lognorm"]
    before = snapshot(adata)
    with pytest.raises(KeyError, match=r"predict= AnnData has no layers\['lognorm'\]"):
        sn.tl.perturb(adata, **ARGS, predict=cells, layer="lognorm", max_epochs=1, **SMALL)
    assert_unchanged(adata, before)
    counts = controls.copy()
    counts.layers["lognorm"] = np.round(np.expm1(counts.layers["lognorm"]) * 10)
    with pytest.warns(UserWarning, match="predict= AnnData looks like raw counts"):
        sn.tl.perturb(adata, **ARGS, predict=counts, layer="lognorm", max_epochs=1, **SMALL)


def test_a_matrix_of_one_value_is_refused_before_training(train_data):
    adata = train_data.copy()
    adata.layers["empty"] = np.zeros(adata.shape, dtype=np.float32)
    before = snapshot(adata)
    with pytest.raises(ValueError, match=r"adata.layers\['empty'\] holds the same value"):
        sn.tl.perturb(adata, **ARGS, predict="t0", layer="empty", max_epochs=1, **SMALL)
    assert_unchanged(adata, before)


def test_diverged_training_is_a_clear_error(train_data):
    """A loss that became NaN is reported by the tool (curve, epoch, fix), not by torch's
    "Expected parameter loc" from inside Lightning; nothing is written."""
    adata = train_data.copy()
    before = snapshot(adata)
    with (
        pytest.warns(RuntimeWarning, match="ScGen.train: training diverged"),
        pytest.raises(ValueError, match=r"diverged \(validation_loss became nan.*Lower the"),
    ):
        sn.tl.perturb(adata, **ARGS, predict="t0", max_epochs=2, plan_kwargs={"lr": 1e30}, **SMALL)
    assert_unchanged(adata, before)


def test_float_condition_column_matches_numbers_by_value(train_data):
    """A float dose column reads "0.0" and "1.0" as strings: control=0 and perturbed=1 find
    those cells (matched by value), in the tool and in the model's own methods."""
    adata = train_data.copy()
    adata.obs["dose"] = (adata.obs["condition"] == "stimulated").astype(float).to_numpy()
    call = {**ARGS, "condition_key": "dose", "control": 0, "perturbed": 1}
    pred, model = sn.tl.perturb(
        adata, **call, predict="t0", max_epochs=1, return_model=True, **SMALL
    )
    assert adata.uns["perturb"]["params"]["control"] == "0.0"
    assert adata.uns["perturb"]["params"]["perturbed"] == "1.0"
    assert pred.n_obs == int(((adata.obs["cell_type"] == "t0") & (adata.obs["dose"] == 0)).sum())
    delta_int, _ = model.latent_delta(0, 1)
    delta_float, _ = model.latent_delta(0.0, 1.0)
    np.testing.assert_array_equal(delta_int, delta_float)
    direct, _ = model.predict(0, 1, cell_type="t0")
    assert direct.n_obs == pred.n_obs
    with pytest.raises(ValueError, match="control='0.5' is not a value"):
        model.latent_delta(0.5, 1)


def test_boolean_condition_column(train_data):
    """control=False on a boolean column, as control=0 on an integer one."""
    adata = train_data.copy()
    adata.obs["stimulated"] = (adata.obs["condition"] == "stimulated").to_numpy()
    call = {**ARGS, "condition_key": "stimulated", "control": False, "perturbed": True}
    pred = sn.tl.perturb(adata, **call, predict="t0", max_epochs=1, **SMALL)
    assert (pred.obs["stimulated"] == "predicted").all()
    assert adata.uns["perturb"]["params"]["control"] == "False"
