"""The JAX scGen against the torch one: modules, RNG streams, weights, tl.perturb output.

The behavioural tests of ``tl.perturb`` (keys, beating "control unchanged", determinism,
model= reuse, save/load, batch removal, bad input) run for both backends in
``test_perturb.py``.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scanpy as sc
import torch

import scneural as sn
from conftest import assert_unchanged, randomize_batch_norm, snapshot

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


def test_missing_jax_raises_install_hint(full, monkeypatch):
    """Without the JAX extra, backend="jax" says how to install it and writes nothing."""
    for name in ("flax", "jax", "optax"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    adata = full[~_held_out(full)].copy()
    before = snapshot(adata)
    with pytest.raises(ImportError, match=r'pip install "scneural\[jax\]"'):
        sn.tl.perturb(adata, predict="t0", backend="jax", max_epochs=1, **ARGS, **SMALL)
    assert_unchanged(adata, before)


jax = pytest.importorskip("jax")  # conftest.py sets its persistent compilation cache

from scneural.models import JaxScGen, JaxScGenModule, ScGen, ScGenModule  # noqa: E402
from scneural.models.scgen._module_jax import scgen_variables_from_torch  # noqa: E402

# ------------------------------------------------------------------ module-level equivalence

MODULE_ARGS = {"n_input": 30, "n_hidden": 24, "n_latent": 6, "n_layers": 2, "kl_weight": 0.1}


def _torch_module(dropout_rate: float) -> ScGenModule:
    torch.manual_seed(0)
    module = ScGenModule(**MODULE_ARGS, dropout_rate=dropout_rate)
    randomize_batch_norm(module)
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

# scGen needs ~50 epochs on these 400 cells for the training loss to level off
EPOCHS = 50
SEED = 1


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


def test_tl_writes_what_torch_writes(trained):
    """Both backends write the same keys, types, shapes and dtypes, and train alike."""
    (a_t, p_t, _), (a_j, p_j, model) = trained["torch"], trained["jax"]
    assert isinstance(model, JaxScGen) and model.backend == "jax"
    assert set(a_j.obsm.keys()) == set(a_t.obsm.keys()) == {"X_perturb"}
    assert a_j.obsm["X_perturb"].shape == a_t.obsm["X_perturb"].shape == (a_j.n_obs, 16)
    assert a_j.obsm["X_perturb"].dtype == a_t.obsm["X_perturb"].dtype == np.float32
    uns_j, uns_t = a_j.uns["perturb"], a_t.uns["perturb"]
    assert set(uns_j) == set(uns_t)
    assert set(uns_j["params"]) == set(uns_t["params"])
    assert set(uns_j["history"]) == set(uns_t["history"])
    assert uns_j["delta"].shape == uns_t["delta"].shape == (16,)
    assert list(uns_j["delta_cell_types"]) == list(uns_t["delta_cell_types"])
    assert p_j.shape == p_t.shape and p_j.X.dtype == p_t.X.dtype == np.float32
    assert list(p_j.obs_names) == list(p_t.obs_names)
    assert list(p_j.obs.columns) == list(p_t.obs.columns)
    assert p_j.obsm["X_perturb"].shape == p_t.obsm["X_perturb"].shape
    loss_t = uns_t["history"]["train_loss"]
    loss_j = uns_j["history"]["train_loss"]
    assert loss_j[-1] < 0.2 * loss_j[0]
    assert abs(loss_j[-1] - loss_t[-1]) < 0.1 * loss_t[-1]


def test_loaded_model_takes_torch_weights(trained, tmp_path):
    """A loaded JAX scGen given the torch model's weights predicts as the torch one."""
    _, _, model = trained["jax"]
    model.save(tmp_path / "jax_scgen", save_anndata=True)
    loaded = JaxScGen.load(tmp_path / "jax_scgen")
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
    assert not np.allclose(
        loaded.get_latent_representation(), model.get_latent_representation(), atol=1e-4
    )


def test_diverged_training_writes_no_nan_prediction(full):
    """JAX does not stop at a NaN loss: the NaN prediction is refused, nothing written."""
    adata = full[~_held_out(full)].copy()
    before = snapshot(adata)
    with pytest.raises(ValueError, match="NaN or infinite values in latent codes.*diverged"):
        sn.tl.perturb(
            adata,
            predict="t0",
            backend="jax",
            max_epochs=2,
            plan_kwargs={"lr": 1e12},
            **ARGS,
            **SMALL,
        )
    assert_unchanged(adata, before)
