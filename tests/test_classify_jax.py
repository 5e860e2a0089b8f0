"""The JAX classifier against the torch one: modules, RNG streams, weights, tl.classify output.

The behavioural tests of ``tl.classify`` (keys, accuracy, determinism, model= reuse,
save/load, bad input) run for both backends in ``test_classify.py``.
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

FAST = {"max_epochs": 12, "enable_progress_bar": False}


def test_missing_jax_raises_install_hint(lognorm_adata, monkeypatch):
    """Without the JAX extra, backend="jax" says how to install it and writes nothing."""
    for name in ("flax", "jax", "optax"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    before = snapshot(lognorm_adata)
    with pytest.raises(ImportError, match=r'pip install "scneural\[jax\]"'):
        sn.tl.classify(lognorm_adata, "group", backend="jax", **FAST)
    assert_unchanged(lognorm_adata, before)


jax = pytest.importorskip("jax")  # conftest.py sets its persistent compilation cache
import jax.numpy as jnp  # noqa: E402

from scneural.models import Classifier, ClassifierModule, JaxClassifier  # noqa: E402
from scneural.models.classifier._module_jax import (  # noqa: E402
    JaxClassifierModule,
    classifier_variables_from_torch,
)
from scneural.nn import MLP, FlaxMLP, batchnorm_to_flax  # noqa: E402

# ------------------------------------------------------------------ module-level equivalence

MODULE_ARGS = {
    "n_input": 40,
    "n_labels": 4,
    "n_batch": 3,
    "n_hidden": (32, 16),
    "log_normalize_input": True,
    "class_weights": (1.0, 2.0, 0.5, 1.5),
    "unlabeled_index": 4,
    "label_smoothing": 0.1,
}


def _tensors(seed: int = 0, n: int = 64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, size=(n, 1))  # code 4: unlabelled
    return {
        "X": rng.poisson(3.0, size=(n, MODULE_ARGS["n_input"])).astype(np.float32),
        "batch": rng.integers(0, 3, size=(n, 1)).astype(np.float32),
        "labels": labels.astype(np.float32),
    }


def _torch_module(dropout_rate: float) -> ClassifierModule:
    torch.manual_seed(0)
    module = ClassifierModule(**MODULE_ARGS, dropout_rate=dropout_rate)
    randomize_batch_norm(module)
    return module


def _torch_forward(module, tensors):
    t = {k: torch.from_numpy(v) for k, v in tensors.items()}
    inference, _, loss = module(t)
    return inference, loss


def test_forward_and_loss_match_torch_in_eval_mode():
    tensors = _tensors()
    torch_module = _torch_module(dropout_rate=0.2).eval()
    with torch.no_grad():
        inference, loss = _torch_forward(torch_module, tensors)
    flax_module = JaxClassifierModule(**MODULE_ARGS, dropout_rate=0.2, training=False)
    variables = classifier_variables_from_torch(torch_module)
    j_inference, _, j_loss = jax.jit(flax_module.apply)(
        variables, tensors, rngs={"dropout": jax.random.PRNGKey(0)}
    )
    np.testing.assert_allclose(j_inference["logits"], inference["logits"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(j_inference["embedding"], inference["embedding"], atol=1e-5)
    np.testing.assert_allclose(float(j_loss.loss), float(loss.loss), rtol=1e-5)
    acc_t = float(loss.extra_metrics["accuracy"])
    assert float(j_loss.extra_metrics["accuracy"]) == pytest.approx(acc_t)


def test_all_unlabelled_minibatch_gives_zero_loss_and_nan_accuracy():
    tensors = _tensors()
    tensors["labels"][:] = 4
    flax_module = JaxClassifierModule(**MODULE_ARGS, training=False)
    variables = classifier_variables_from_torch(_torch_module(0.0))
    _, _, loss = jax.jit(flax_module.apply)(variables, tensors)
    assert float(loss.loss) == 0.0
    assert np.isnan(float(loss.extra_metrics["accuracy"]))


def test_gradients_and_batch_stats_match_torch_in_train_mode():
    """One training-mode forward/backward (no dropout): same loss, gradients and BN updates."""
    tensors = _tensors(seed=1)
    torch_module = _torch_module(dropout_rate=0.0).train()
    variables = classifier_variables_from_torch(torch_module)
    _, loss = _torch_forward(torch_module, tensors)
    loss.loss.backward()

    flax_module = JaxClassifierModule(**MODULE_ARGS, dropout_rate=0.0, training=True)

    def loss_fn(params):
        out, updates = flax_module.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            tensors,
            mutable=["batch_stats"],
        )
        return out[2].loss, updates

    (j_loss, updates), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
        variables["params"]
    )
    assert float(j_loss) == pytest.approx(loss.loss.item(), rel=1e-5)
    first = torch_module.encoder.blocks[0]
    np.testing.assert_allclose(
        grads["encoder"]["block_0"]["dense"]["kernel"], first[0].weight.grad.numpy().T, atol=1e-5
    )
    np.testing.assert_allclose(
        grads["encoder"]["block_1"]["batch_norm"]["scale"],
        torch_module.encoder.blocks[1][1].weight.grad.numpy(),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        grads["classifier"]["kernel"], torch_module.classifier.weight.grad.numpy().T, atol=1e-5
    )
    stats = updates["batch_stats"]["encoder"]["block_0"]["batch_norm"]
    np.testing.assert_allclose(stats["mean"], first[1].running_mean.numpy(), atol=1e-6)
    # torch keeps the unbiased batch variance in its running estimate, flax the biased one
    n = tensors["X"].shape[0]
    old_var = variables["batch_stats"]["encoder"]["block_0"]["batch_norm"]["var"]
    batch_var_t = (first[1].running_var.numpy() - 0.99 * np.asarray(old_var)) / 0.01
    batch_var_j = (np.asarray(stats["var"]) - 0.99 * np.asarray(old_var)) / 0.01
    np.testing.assert_allclose(batch_var_j * n / (n - 1), batch_var_t, rtol=1e-3, atol=1e-4)


def test_flax_mlp_has_torch_widths_and_init():
    torch_mlp = MLP(30, [20, 10], n_cat=2)
    variables = jax.jit(FlaxMLP(n_hidden=(20, 10), n_cat=2).init)(
        jax.random.PRNGKey(0), jnp.ones((5, 30)), jnp.zeros((5, 1))
    )
    kernel_0 = variables["params"]["block_0"]["dense"]["kernel"]
    assert kernel_0.shape == tuple(torch_mlp.blocks[0][0].weight.shape[::-1]) == (32, 20)
    assert variables["params"]["block_1"]["dense"]["kernel"].shape == (22, 10)
    bound = 1 / np.sqrt(32)  # torch.nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(kernel_0).max() <= bound and np.abs(kernel_0).max() > 0.9 * bound
    assert set(variables["batch_stats"]["block_0"]["batch_norm"]) == {"mean", "var"}


def test_batchnorm_copy_refuses_other_momentum():
    with pytest.raises(ValueError, match="momentum"):
        batchnorm_to_flax(torch.nn.BatchNorm1d(4))  # torch's default momentum 0.1


# ------------------------------------------------------------------- model and tl.classify


@pytest.fixture(scope="module")
def data():
    adata = sn.datasets.synthetic_counts(n_obs=600, n_vars=200, n_groups=3, seed=1)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


@pytest.fixture(scope="module")
def trained(data):
    """The same tl.classify call with both backends (the torch one as reference)."""
    out = {}
    for backend in ("torch", "jax"):
        adata = data.copy()
        model = sn.tl.classify(adata, "group", backend=backend, **FAST)
        out[backend] = (adata, model)
    return out


def test_tl_writes_what_torch_writes(trained):
    """Both backends write the same keys, types, shapes and dtypes, and train alike."""
    (a_t, _), (a_j, model) = trained["torch"], trained["jax"]
    assert isinstance(model, JaxClassifier)
    assert set(a_j.obs.columns) == set(a_t.obs.columns)
    assert set(a_j.obsm.keys()) == set(a_t.obsm.keys())
    for key in a_t.obs.columns:
        assert a_j.obs[key].dtype == a_t.obs[key].dtype, key
    for key in a_t.obsm.keys():
        j, t = a_j.obsm[key], a_t.obsm[key]
        assert type(j) is type(t) and j.shape == t.shape
        assert np.asarray(j).dtype == np.asarray(t).dtype, key
    uns_j, uns_t = a_j.uns["classify"], a_t.uns["classify"]
    assert set(uns_j) == set(uns_t)
    assert set(uns_j["params"]) == set(uns_t["params"])
    assert set(uns_j["history"]) == set(uns_t["history"])
    assert set(uns_j["validation"]) == set(uns_t["validation"])
    loss_t = uns_t["history"]["train_loss"]
    loss_j = uns_j["history"]["train_loss"]
    assert loss_j[-1] < 0.5 * loss_j[0]
    assert abs(loss_j[-1] - loss_t[-1]) < 0.25


def test_random_state_seeds_the_flax_rng_streams(data):
    """The params/dropout streams come from random_state (via scvi.settings.seed)."""
    from scneural._utils import set_seed

    registered = data.copy()
    JaxClassifier.setup_anndata(registered, labels_key="group")
    keys = {}
    for seed in (0, 0, 1):
        set_seed(seed)
        module = JaxClassifier(registered, n_hidden=(8,)).module
        keys.setdefault(seed, []).append(
            {name: np.asarray(jax.random.key_data(k)) for name, k in module.rngs.items()}
        )
    assert set(keys[0][0]) == {"params", "dropout"}
    for name in ("params", "dropout"):
        np.testing.assert_array_equal(keys[0][0][name], keys[0][1][name])
        assert not np.array_equal(keys[0][0][name], keys[1][0][name])


def test_loaded_model_takes_torch_weights(tmp_path, trained):
    """A loaded JAX classifier given the torch model's weights predicts as the torch one."""
    _, model = trained["jax"]
    model.save(tmp_path / "jax_clf")
    loaded = JaxClassifier.load(tmp_path / "jax_clf", adata=model.adata)
    _, torch_model = trained["torch"]
    assert isinstance(torch_model, Classifier)
    loaded.load_torch_weights(torch_model)
    np.testing.assert_allclose(
        loaded.predict(soft=True).to_numpy(), torch_model.predict(soft=True).to_numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        loaded.get_latent_representation(), torch_model.get_latent_representation(), atol=1e-4
    )
    # the JAX model's own weights were not touched
    assert not np.allclose(
        model.predict(soft=True).to_numpy(), loaded.predict(soft=True).to_numpy(), atol=1e-5
    )


def test_load_torch_weights_refuses_a_model_that_does_not_match(trained, data):
    """Other genes, classes or layer sizes would load without a word and predict wrongly."""
    _, model = trained["jax"]
    _, torch_model = trained["torch"]
    reordered = data[:, data.var_names[::-1]].copy()
    other_genes = sn.tl.classify(reordered, "group", **{**FAST, "max_epochs": 1})
    with pytest.raises(ValueError, match="other genes \\(or another order\\)"):
        model.load_torch_weights(other_genes)
    renamed = data.copy()
    renamed.obs["group"] = renamed.obs["group"].cat.rename_categories(lambda c: f"z_{c}")
    other_classes = sn.tl.classify(renamed, "group", **{**FAST, "max_epochs": 1})
    with pytest.raises(ValueError, match="classes .* are not this model's"):
        model.load_torch_weights(other_classes)
    narrow = sn.tl.classify(data.copy(), "group", n_hidden=(8,), **{**FAST, "max_epochs": 1})
    with pytest.raises(ValueError, match="architecture differs"):
        model.load_torch_weights(narrow)
    with pytest.raises(TypeError, match="needs a trained Classifier"):
        model.load_torch_weights(model)
    untrained = JaxClassifier(model.adata)
    with pytest.raises(RuntimeError, match="no training state.*train\\(max_steps=1"):
        untrained.load_torch_weights(torch_model)
    before = model.predict(soft=True).to_numpy()
    np.testing.assert_array_equal(model.predict(soft=True).to_numpy(), before)  # untouched
    assert isinstance(torch_model, Classifier)


def test_lightning_gradient_clipping_and_adamw_work_as_on_torch(data):
    """gradient_clip_val is Lightning's torch clipping; JAX clips in its optax chain."""
    adata = data.copy()
    model = sn.tl.classify(
        adata,
        "group",
        backend="jax",
        gradient_clip_val=0.5,
        plan_kwargs={"optimizer": "AdamW"},
        **{**FAST, "max_epochs": 2},
    )
    assert model.training_plan.max_norm == 0.5
    assert adata.obs["classify_label"].notna().all()
    with pytest.raises(ValueError, match="reduce_lr_on_plateau.*not supported"):
        sn.tl.classify(
            data.copy(), "group", backend="jax", plan_kwargs={"reduce_lr_on_plateau": True}, **FAST
        )


def test_auto_accelerator_falls_back_to_cpu_without_a_jax_gpu(monkeypatch):
    """torch may see a GPU that a CPU-only jaxlib cannot use: train on the CPU and say how
    to install JAX for GPUs; an explicit GPU request is an error."""
    from scneural.models._jax import jax_trainer_kwargs

    def no_gpu(kind=None):
        if kind in ("gpu", "cuda"):
            raise RuntimeError("Unknown backend gpu")
        return [object()]

    monkeypatch.setattr(jax, "devices", no_gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.warns(UserWarning, match="trains on the CPU"):
        assert jax_trainer_kwargs({}, {})["accelerator"] == "cpu"
    with pytest.raises(ValueError, match="no GPU backend"):
        jax_trainer_kwargs({"accelerator": "gpu"}, {})
    plan = {}
    assert jax_trainer_kwargs({"gradient_clip_val": 2, "accelerator": "cpu"}, plan) == {
        "accelerator": "cpu"
    }
    assert plan == {"max_norm": 2.0}
