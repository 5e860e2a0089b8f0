"""The JAX scGen: equivalence with the torch one, determinism, save/load, tl.perturb."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scanpy as sc
import torch

import scneural as sn
from conftest import assert_unchanged, snapshot

pytestmark = pytest.mark.jax

ARGS = {
    "condition_key": "condition",
    "control": "control",
    "perturbed": "stimulated",
    "cell_type_key": "cell_type",
}
SMALL = {"n_hidden": 128, "n_latent": 16, "accelerator": "cpu", "enable_progress_bar": False}


@pytest.fixture(scope="module")
def full():
    """Log-normalised synthetic data: 4 types, control and stimulated, 20 response genes."""
    adata = sn.datasets.synthetic_perturbation(n_obs=500, n_vars=80, seed=0)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


def _held_out(adata, cell_type="t0"):
    return (
        (adata.obs["cell_type"] == cell_type) & (adata.obs["condition"] == "stimulated")
    ).to_numpy()


def _control(adata, cell_type="t0"):
    return (
        (adata.obs["cell_type"] == cell_type) & (adata.obs["condition"] == "control")
    ).to_numpy()


def test_missing_jax_raises_install_hint(full, monkeypatch):
    """Without the JAX extra, backend="jax" says how to install it and writes nothing."""
    for name in ("flax", "jax", "optax"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    adata = full[~_held_out(full)].copy()
    before = snapshot(adata)
    with pytest.raises(ImportError, match=r'pip install "scneural\[jax\]"'):
        sn.tl.perturb(adata, predict="t0", backend="jax", max_epochs=1, **ARGS, **SMALL)
    assert_unchanged(adata, before)


jax = pytest.importorskip("jax")

# XLA compilation dominates these small trainings on CPU; the persistent cache lets runs
# with the same shapes (same-seed repeat, later test sessions) reuse compiled steps
jax.config.update(
    "jax_compilation_cache_dir", str(Path(tempfile.gettempdir()) / "scneural-jax-cache")
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

from scneural.models import JaxScGen, JaxScGenModule, ScGen, ScGenModule  # noqa: E402
from scneural.models.scgen._module_jax import scgen_variables_from_torch  # noqa: E402

# ------------------------------------------------------------------ module-level equivalence

MODULE_ARGS = {"n_input": 30, "n_hidden": 24, "n_latent": 6, "n_layers": 2, "kl_weight": 0.1}


def _torch_module(dropout_rate: float) -> ScGenModule:
    torch.manual_seed(0)
    module = ScGenModule(**MODULE_ARGS, dropout_rate=dropout_rate)
    # non-trivial running statistics and affine BatchNorm parameters, so copying them matters
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.BatchNorm1d):
                layer.running_mean.uniform_(-0.5, 0.5)
                layer.running_var.uniform_(0.5, 2.0)
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.uniform_(-0.2, 0.2)
    return module


def _x(seed: int = 0, n: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.log1p(rng.poisson(2.0, size=(n, MODULE_ARGS["n_input"]))).astype(np.float32)


def _through_mean(module, x):
    """Encode, decode the posterior mean and compute the loss (flax ``method=``)."""
    inference = module.inference(x)
    generative = module.generative(inference["qz_m"])
    loss = module.loss({"X": x}, inference, generative)
    return inference, generative, loss


def test_encoder_decoder_and_loss_match_torch_in_eval_mode():
    x = _x()
    torch_module = _torch_module(dropout_rate=0.2).eval()
    with torch.no_grad():
        inference = torch_module.inference(torch.from_numpy(x))
        generative = torch_module.generative(inference["qz_m"])
        loss = torch_module.loss({"X": torch.from_numpy(x)}, inference, generative)
    flax_module = JaxScGenModule(**MODULE_ARGS, dropout_rate=0.2, training=False)
    variables = scgen_variables_from_torch(torch_module)
    j_inf, j_gen, j_loss = jax.jit(
        lambda v, x, key: flax_module.apply(v, x, method=_through_mean, rngs={"z": key})
    )(variables, x, jax.random.PRNGKey(0))
    np.testing.assert_allclose(j_inf["qz_m"], inference["qz_m"].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(j_inf["qz_v"], inference["qz_v"].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(j_gen["px"], generative["px"].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(j_loss.loss), float(loss.loss), rtol=1e-5)
    np.testing.assert_allclose(j_loss.kl_local["kl_local"], loss.kl_local["kl_local"], rtol=1e-4)
    # the z sample is qz_m + sqrt(qz_v) * N(0, 1) from the "z" stream
    z = np.asarray(j_inf["z"])
    assert z.shape == (x.shape[0], MODULE_ARGS["n_latent"]) and not np.allclose(z, j_inf["qz_m"])


def test_gradients_match_torch_in_train_mode():
    """One training-mode forward/backward (no dropout, decoded mean): same loss and grads."""
    x = _x(seed=1)
    torch_module = _torch_module(dropout_rate=0.0).train()
    variables = scgen_variables_from_torch(torch_module)
    inference = torch_module.inference(torch.from_numpy(x))
    generative = torch_module.generative(inference["qz_m"])
    loss = torch_module.loss({"X": torch.from_numpy(x)}, inference, generative)
    loss.loss.backward()

    flax_module = JaxScGenModule(**MODULE_ARGS, dropout_rate=0.0, training=True)

    def loss_fn(params):
        out, _ = flax_module.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            method=_through_mean,
            rngs={"z": jax.random.PRNGKey(0)},
            mutable=["batch_stats"],
        )
        return out[2].loss

    j_loss, grads = jax.jit(jax.value_and_grad(loss_fn))(variables["params"])
    assert float(j_loss) == pytest.approx(loss.loss.item(), rel=1e-5)
    pairs = [
        (grads["encoder"]["block_0"]["dense"]["kernel"], torch_module.encoder.blocks[0][0].weight),
        (grads["z_logvar"]["kernel"], torch_module.z_logvar.weight),
        (grads["decoder"]["block_1"]["dense"]["kernel"], torch_module.decoder.blocks[1][0].weight),
        (grads["px"]["kernel"], torch_module.px.weight),
    ]
    for j_grad, weight in pairs:
        t_grad = weight.grad.numpy().T
        np.testing.assert_allclose(j_grad, t_grad, rtol=1e-3, atol=1e-4 * np.abs(t_grad).max())


# ------------------------------------------------------------------- model and tl.perturb

# scGen needs ~50 epochs on these 400 cells (at 30 neither backend beats "control
# unchanged" reliably); held-out R² varies by ±0.1 from seed to seed for both backends
EPOCHS = 50
SEED = 1


@pytest.fixture(scope="module")
def trained(full):
    """The same tl.perturb call with both backends (the torch one as reference)."""
    out = {}
    for backend in ("torch", "jax"):
        train = full[~_held_out(full)].copy()
        pred, model = sn.tl.perturb(
            train,
            predict="t0",
            backend=backend,
            max_epochs=EPOCHS,
            random_state=SEED,
            return_model=True,
            **ARGS,
            **SMALL,
        )
        out[backend] = (train, pred, model)
    return out


def test_tl_writes_same_keys_shapes_dtypes(trained, full):
    (a_t, p_t, _), (a_j, p_j, model) = trained["torch"], trained["jax"]
    assert isinstance(model, JaxScGen) and model.backend == "jax"
    assert set(a_j.obsm.keys()) == set(a_t.obsm.keys()) == {"X_perturb"}
    assert a_j.obsm["X_perturb"].shape == a_t.obsm["X_perturb"].shape == (a_j.n_obs, 16)
    assert a_j.obsm["X_perturb"].dtype == a_t.obsm["X_perturb"].dtype == np.float32
    uns_j, uns_t = a_j.uns["perturb"], a_t.uns["perturb"]
    assert set(uns_j) == set(uns_t)
    assert set(uns_j["params"]) == set(uns_t["params"])
    assert set(uns_j["history"]) == set(uns_t["history"])
    assert uns_j["params"]["backend"] == "jax" and uns_t["params"]["backend"] == "torch"
    assert len(uns_j["history"]["train_loss"]) == len(uns_j["history"]["validation_loss"]) >= 1
    assert uns_j["delta"].shape == uns_t["delta"].shape == (16,)
    assert list(uns_j["delta_cell_types"]) == list(uns_t["delta_cell_types"])
    assert p_j.shape == p_t.shape and p_j.X.dtype == p_t.X.dtype == np.float32
    assert list(p_j.obs_names) == list(p_t.obs_names)
    assert list(p_j.obs.columns) == list(p_t.obs.columns)
    assert p_j.obsm["X_perturb"].shape == p_t.obsm["X_perturb"].shape
    assert "X_perturb" not in full.obsm


def test_jax_prediction_recovers_the_known_shift(trained, full):
    """Much closer to the held-out truth than "control unchanged", like the torch model."""
    real = full[_held_out(full)]
    control = full[_control(full)]
    truth = np.asarray(real.X.mean(axis=0)).ravel()
    err_ctrl = np.abs(np.asarray(control.X.mean(axis=0)).ravel() - truth)
    response = full.var["response"].to_numpy()
    r2_control = sn.metrics.r2_mean(real, control)
    _, pred, _ = trained["jax"]
    # scGen's measure: R² of per-gene means, much higher than "nothing changes"
    assert sn.metrics.r2_mean(real, pred) > r2_control + 0.2
    # and the genes that respond move towards their true means
    err_pred = np.abs(np.asarray(pred.X.mean(axis=0)).ravel() - truth)
    assert err_pred[response].mean() < 0.95 * err_ctrl[response].mean()
    # the torch model, trained the same way, also beats the baseline
    assert sn.metrics.r2_mean(real, trained["torch"][1]) > r2_control + 0.1
    loss_t = trained["torch"][0].uns["perturb"]["history"]["train_loss"]
    loss_j = trained["jax"][0].uns["perturb"]["history"]["train_loss"]
    assert loss_j[-1] < 0.2 * loss_j[0]
    assert abs(loss_j[-1] - loss_t[-1]) < 0.1 * loss_t[-1]


def test_same_seed_repeats_and_random_state_seeds_the_streams(full):
    runs = []
    for seed in (SEED, SEED, SEED + 1):
        adata = full[~_held_out(full)].copy()
        pred = sn.tl.perturb(
            adata, predict="t0", backend="jax", max_epochs=2, random_state=seed, **ARGS, **SMALL
        )
        runs.append((pred.X, adata.obsm["X_perturb"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.allclose(runs[0][1], runs[2][1])


def test_module_has_params_dropout_and_z_streams(full):
    adata = full.copy()
    JaxScGen.setup_anndata(adata, "condition", "cell_type")
    sn._utils.set_seed(5)
    first = JaxScGen(adata, n_hidden=8, n_latent=2).module
    sn._utils.set_seed(5)
    second = JaxScGen(adata, n_hidden=8, n_latent=2).module
    keys = [module.rngs for module in (first, second)]  # every access splits anew
    assert set(keys[0]) == {"params", "dropout", "z"}
    for name in ("params", "dropout", "z"):
        np.testing.assert_array_equal(
            jax.random.key_data(keys[0][name]), jax.random.key_data(keys[1][name])
        )


def test_model_reuse_save_load_and_torch_weights(trained, full, tmp_path):
    train, pred, model = trained["jax"]
    again = train.copy()
    reused = sn.tl.perturb(again, predict="t0", model=model, random_state=SEED, **ARGS)
    np.testing.assert_allclose(reused.X, pred.X, rtol=1e-5, atol=1e-5)
    params = again.uns["perturb"]["params"]
    assert params["backend"] == "jax" and params["model_reused"] is True
    model.save(tmp_path / "jax_scgen", save_anndata=True)
    loaded = JaxScGen.load(tmp_path / "jax_scgen")
    assert loaded.is_trained and loaded.input_source_ == model.input_source_
    third = train.copy()
    pred_loaded = sn.tl.perturb(third, predict="t0", model=loaded, random_state=SEED, **ARGS)
    np.testing.assert_allclose(pred_loaded.X, pred.X, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(third.obsm["X_perturb"], train.obsm["X_perturb"], atol=1e-5)
    # the model API: same prediction, and control cells passed directly
    model_pred, delta = loaded.predict(
        "control", "stimulated", cell_type="t0", adata=train, random_state=SEED
    )
    np.testing.assert_allclose(model_pred.X, pred.X, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(delta, train.uns["perturb"]["delta"], rtol=1e-5)
    direct, _ = loaded.predict(
        "control", "stimulated", control_cells=full[_control(full)], random_state=SEED
    )
    np.testing.assert_allclose(direct.X, pred.X, rtol=1e-4, atol=1e-4)
    # the loaded copy takes over the torch model's weights and then predicts as it does
    t_train, _, torch_model = trained["torch"]
    assert isinstance(torch_model, ScGen)
    loaded.load_torch_weights(torch_model)
    np.testing.assert_allclose(
        loaded.get_latent_representation(), torch_model.get_latent_representation(), atol=1e-4
    )
    jax_pred, _ = loaded.predict(
        "control", "stimulated", cell_type="t0", adata=t_train, balance="mean"
    )
    torch_pred, _ = torch_model.predict(
        "control", "stimulated", cell_type="t0", adata=t_train, balance="mean"
    )
    np.testing.assert_allclose(jax_pred.X, torch_pred.X, atol=1e-4)


def test_batch_removal_shared_with_torch(full):
    adata = full.copy()
    rng = np.random.default_rng(12345)
    adata.obs["batch"] = rng.choice(["a", "b"], size=adata.n_obs)
    adata.obs["batch"] = adata.obs["batch"].astype("category")
    JaxScGen.setup_anndata(adata, "condition", "cell_type", batch_key="batch")
    model = JaxScGen(adata, n_hidden=32, n_latent=4)
    model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    corrected = model.batch_removal()
    assert list(corrected.obs_names) == list(adata.obs_names)
    assert corrected.shape == adata.shape and corrected.X.dtype == np.float32
    latent = corrected.obsm["latent"]
    for cell_type in adata.obs["cell_type"].cat.categories:
        in_type = (adata.obs["cell_type"] == cell_type).to_numpy()
        means = [latent[in_type & (adata.obs["batch"] == b).to_numpy()].mean(axis=0) for b in "ab"]
        np.testing.assert_allclose(means[0], means[1], atol=1e-4)


def test_bad_input_leaves_adata_unchanged(full, trained):
    adata = full[~_held_out(full)].copy()
    before = snapshot(adata)
    call = {**ARGS, "predict": "t0", "max_epochs": 1, "backend": "jax", **SMALL}
    cases = [
        (ValueError, "backend='tensorflow'", {"backend": "tensorflow"}),
        (ValueError, "control='CTRL' is not a value", {"control": "CTRL"}),
        (KeyError, "cell_type_key='type'", {"cell_type_key": "type"}),
        (ValueError, "cell type 'Mono' is not in", {"predict": "Mono"}),
        (ValueError, "no cell type has both", {"restrict_arithmetic_to": ["t0"]}),
        (TypeError, "JaxScGen", {"model": trained["jax"][2].module}),
    ]
    for error, match, kwargs in cases:
        with pytest.raises(error, match=match):
            sn.tl.perturb(adata, **{**call, **kwargs})
    registered = full.copy()
    JaxScGen.setup_anndata(registered, "condition", "cell_type")
    with pytest.raises(ValueError, match="not been trained"):
        sn.tl.perturb(adata, **{**call, "model": JaxScGen(registered, n_hidden=8, n_latent=2)})
    assert_unchanged(adata, before)
