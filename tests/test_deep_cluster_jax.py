"""The JAX scDeepCluster against the torch one: modules, noise stream, weights, tl output.

The behavioural tests of ``tl.deep_cluster`` (keys, ARI, determinism, model= reuse, k
estimation, batches, save/load, bad input) run for both backends in ``test_deep_cluster.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scneural as sn
from conftest import randomize_batch_norm

pytestmark = pytest.mark.jax

jax = pytest.importorskip("jax")  # conftest.py sets its persistent compilation cache
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from scneural.models import DeepCluster, DeepClusterModule, JaxDeepCluster  # noqa: E402
from scneural.models.deep_cluster import target_distribution  # noqa: E402
from scneural.models.deep_cluster._module_jax import (  # noqa: E402
    JaxDeepClusterModule,
    deep_cluster_variables_from_torch,
)
from scneural.models.deep_cluster._plan_jax import target_distribution_np  # noqa: E402

FAST = {"pretrain_epochs": 30, "max_epochs": 10, "batch_size": 64}
TRAINER = {"enable_progress_bar": False, "accelerator": "cpu"}

# ------------------------------------------------------------------ module-level equivalence

MODULE_ARGS = {
    "n_input": 30,
    "n_batch": 2,
    "n_hidden": (16, 8),
    "n_latent": 4,
    "n_clusters": 3,
}


def _tensors(seed: int = 0, n: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "X": rng.poisson(2.0, size=(n, MODULE_ARGS["n_input"])).astype(np.float32),
        "batch": rng.integers(0, 2, size=(n, 1)).astype(np.float32),
        "ind_x": np.arange(n, dtype=np.float32)[:, None],
    }


def _torch_module(use_batch_norm: bool) -> DeepClusterModule:
    torch.manual_seed(0)
    module = DeepClusterModule(**MODULE_ARGS, use_batch_norm=use_batch_norm)
    module.set_normalization(torch.rand(30), torch.rand(30) + 0.5, 55.0)
    module.set_cluster_centres(torch.randn(3, 4))
    randomize_batch_norm(module)
    return module


@pytest.mark.parametrize("use_batch_norm", [False, True])
def test_forward_loss_and_q_match_torch_in_eval_mode(use_batch_norm):
    tensors = _tensors()
    torch_module = _torch_module(use_batch_norm).eval()
    t = {k: torch.from_numpy(v) for k, v in tensors.items()}
    with torch.no_grad():
        inference, generative, loss = torch_module(t)
        target = target_distribution(inference["q"])
        _, _, dec_loss = torch_module(t, loss_kwargs={"target_p": target, "gamma": 0.5})
    flax_module = JaxDeepClusterModule(**MODULE_ARGS, use_batch_norm=use_batch_norm, training=False)
    variables = deep_cluster_variables_from_torch(torch_module)
    apply = jax.jit(flax_module.apply)
    j_inf, j_gen, j_loss = apply(variables, tensors)
    np.testing.assert_allclose(j_inf["z"], inference["z"].numpy(), atol=1e-5)
    np.testing.assert_allclose(j_inf["q"], inference["q"].numpy(), atol=1e-6)
    np.testing.assert_allclose(j_inf["size_factor"], inference["size_factor"].numpy(), rtol=1e-6)
    px = generative["px"]
    np.testing.assert_allclose(j_gen["mu"], px.mu.numpy(), rtol=1e-4)
    np.testing.assert_allclose(j_gen["theta"], px.theta.numpy(), rtol=1e-4)
    np.testing.assert_allclose(j_gen["zi_logits"], px.zi_logits.numpy(), atol=1e-5)
    assert float(j_loss.loss) == pytest.approx(float(loss.loss), rel=1e-5)
    np.testing.assert_allclose(target_distribution_np(j_inf["q"]), target.numpy(), atol=1e-6)
    _, _, j_dec = apply(
        variables, tensors, loss_kwargs={"target_p": jnp.asarray(target.numpy()), "gamma": 0.5}
    )
    assert float(j_dec.loss) == pytest.approx(float(dec_loss.loss), rel=1e-5)
    np.testing.assert_allclose(j_dec.kl_local["kl_local"], dec_loss.kl_local["kl_local"], atol=1e-6)


def test_dec_gradients_match_torch_without_noise():
    """Training mode with zero noise: the DEC loss and its gradients agree."""
    args = {**MODULE_ARGS, "noise_sd": 0.0}
    torch.manual_seed(0)
    torch_module = DeepClusterModule(**args)
    torch_module.set_cluster_centres(torch.randn(3, 4))
    tensors = _tensors(seed=1)
    t = {k: torch.from_numpy(v) for k, v in tensors.items()}
    with torch.no_grad():
        target = target_distribution(torch_module.eval()(t)[0]["q"])
    torch_module.train()
    torch_module.clustering = True
    _, _, loss = torch_module(t, loss_kwargs={"target_p": target, "gamma": 0.3})
    loss.loss.backward()

    flax_module = JaxDeepClusterModule(**args, training=True)
    variables = deep_cluster_variables_from_torch(torch_module)

    def loss_fn(params):
        out = flax_module.apply(
            {**variables, "params": params},
            tensors,
            rngs={"noise": jax.random.PRNGKey(0)},
            loss_kwargs={"target_p": jnp.asarray(target.numpy()), "gamma": 0.3},
        )
        return out[2].loss

    j_loss, grads = jax.jit(jax.value_and_grad(loss_fn))(variables["params"])
    assert float(j_loss) == pytest.approx(loss.loss.item(), rel=1e-5)
    np.testing.assert_allclose(
        grads["cluster_centres"], torch_module.cluster_centres.grad.numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        grads["encoder"]["linear_0"]["kernel"],
        torch_module.encoder.linears[0].weight.grad.numpy().T,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        grads["mean_head"]["kernel"], torch_module.mean_head.weight.grad.numpy().T, atol=1e-5
    )


def test_noise_stream_drives_the_denoising_encoder():
    tensors = _tensors()
    flax_module = JaxDeepClusterModule(**MODULE_ARGS, training=True)
    variables = deep_cluster_variables_from_torch(_torch_module(False))
    apply = jax.jit(flax_module.apply)

    def z(seed):
        return np.asarray(
            apply(variables, tensors, rngs={"noise": jax.random.PRNGKey(seed)})[0]["z"]
        )

    np.testing.assert_array_equal(z(0), z(0))
    assert np.abs(z(0) - z(1)).max() > 0.1
    with pytest.raises(Exception, match="noise"):
        apply(variables, tensors)  # training mode needs the "noise" stream


# ------------------------------------------------------------------- model and tl.deep_cluster


def _data(seed: int = 0, n_obs: int = 256):
    return sn.datasets.synthetic_counts(
        n_obs=n_obs, n_vars=100, n_groups=3, markers_per_group=12, seed=seed, fold_change=6.0
    )


@pytest.fixture(scope="module")
def trained():
    """The same tl.deep_cluster call with both backends (the torch one as reference)."""
    out = {}
    for backend in ("torch", "jax"):
        adata = _data()
        model = sn.tl.deep_cluster(adata, 3, backend=backend, labels_key="group", **FAST, **TRAINER)
        out[backend] = (adata, model)
    return out


def _same_structure(a, b, path="uns"):
    if isinstance(b, dict):
        assert isinstance(a, dict) and set(a) == set(b), path
        for key in b:
            _same_structure(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and a.dtype == b.dtype, path
        assert a.ndim == b.ndim, path
    else:
        assert type(a) is type(b) or b is None or a is None, path


def test_tl_writes_what_torch_writes(trained):
    """Both backends write the same keys, types, shapes and dtypes, and pretrain alike."""
    (a_t, _), (a_j, model) = trained["torch"], trained["jax"]
    assert isinstance(model, JaxDeepCluster) and model.backend == "jax"
    assert set(a_j.obs.columns) == set(a_t.obs.columns)
    assert a_j.obs["deep_cluster"].dtype == a_t.obs["deep_cluster"].dtype
    assert set(a_j.obsm.keys()) == set(a_t.obsm.keys())
    for key in a_t.obsm.keys():
        assert a_j.obsm[key].shape == a_t.obsm[key].shape, key
        assert a_j.obsm[key].dtype == a_t.obsm[key].dtype, key
    uns_j, uns_t = a_j.uns["deep_cluster"], a_t.uns["deep_cluster"]
    history_j = {k: set(v) for k, v in uns_j["history"].items()}
    history_t = {k: set(v) for k, v in uns_t["history"].items()}
    assert history_j == history_t
    _same_structure(
        {k: v for k, v in uns_j.items() if k != "history"},
        {k: v for k, v in uns_t.items() if k != "history"},
    )
    loss_t = uns_t["history"]["pretrain"]["train_loss"]
    loss_j = uns_j["history"]["pretrain"]["train_loss"]
    assert abs(loss_j[-1] - loss_t[-1]) < 0.15


def test_loaded_model_takes_torch_weights(tmp_path, trained):
    """A loaded JAX model given the torch model's weights clusters as the torch one."""
    _, model = trained["jax"]
    model.save(tmp_path / "jax_dc")
    loaded = JaxDeepCluster.load(tmp_path / "jax_dc", adata=model.adata)
    _, torch_model = trained["torch"]
    assert isinstance(torch_model, DeepCluster)
    loaded.load_torch_weights(torch_model)
    np.testing.assert_allclose(
        loaded.get_soft_assignment(), torch_model.get_soft_assignment(), atol=1e-5
    )
    np.testing.assert_allclose(
        loaded.get_latent_representation(), torch_model.get_latent_representation(), atol=1e-4
    )
    assert not np.allclose(
        model.get_latent_representation(), loaded.get_latent_representation(), atol=1e-4
    )


def test_gradient_clip_val_clips_in_the_optax_chain():
    """Lightning refuses gradient_clip_val for hand-optimised JAX steps; the JAX model
    clips both phases' updates in optax instead, as Lightning does for torch."""
    from scneural.models._jax_base import ScneuralJaxTrainingPlan

    plan = ScneuralJaxTrainingPlan.__new__(ScneuralJaxTrainingPlan)
    plan.optimizer_name, plan.max_norm = "Custom", 1e-3
    plan.optimizer_creator = optax.sgd(1.0)
    step = plan.get_optimizer_creator()()
    grads = {"w": jnp.full(4, 10.0)}
    updates, _ = step.update(grads, step.init(grads))
    assert float(jnp.linalg.norm(updates["w"])) == pytest.approx(1e-3, rel=1e-4)
    adata = _data(n_obs=128)
    fast = {**FAST, "pretrain_epochs": 2, "max_epochs": 1}
    sn.tl.deep_cluster(adata, 3, backend="jax", gradient_clip_val=1.0, **fast, **TRAINER)
    assert adata.obs["deep_cluster"].notna().all()
