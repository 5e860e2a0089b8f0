"""The tools' extra arguments: a misspelt one is named with the closest known names before
any work, and arguments that only build or train a model are refused with ``model=``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import scneural as sn
from conftest import assert_unchanged, log_normalise, snapshot, synthetic_section

QUIET = {"accelerator": "cpu", "enable_progress_bar": False}
PERTURB = {
    "condition_key": "condition",
    "control": "control",
    "perturbed": "stimulated",
    "cell_type_key": "cell_type",
    "predict": "t0",
}


def _counts():
    return sn.datasets.synthetic_counts(n_obs=120, n_vars=40, n_groups=3, seed=0)


def _lognorm_counts():
    return log_normalise(_counts())


def _perturbation():
    adata = log_normalise(sn.datasets.synthetic_perturbation(n_obs=200, n_vars=30, seed=0))
    held_out = (adata.obs["cell_type"] == "t0") & (adata.obs["condition"] == "stimulated")
    return adata[~held_out.to_numpy()].copy()


def _classify(adata=None, **kwargs):
    adata = _lognorm_counts() if adata is None else adata
    return sn.tl.classify(adata, "group", **{"n_hidden": (8,), **QUIET, **kwargs})


def _deep_cluster(adata=None, **kwargs):
    adata = _counts() if adata is None else adata
    defaults = {"n_hidden": (16,), "n_latent": 4, "pretrain_epochs": 1, "max_epochs": 1}
    return sn.tl.deep_cluster(adata, 3, **{**defaults, **QUIET, **kwargs})


def _perturb(adata=None, **kwargs):
    adata = _perturbation() if adata is None else adata
    defaults = {"n_hidden": 16, "n_latent": 4, "max_epochs": 1}
    return sn.tl.perturb(adata, **PERTURB, **{**defaults, **QUIET, **kwargs})


@pytest.mark.parametrize(
    "run, data, typo, suggested",
    [
        (_classify, _lognorm_counts, {"max_epoch": 1}, "'max_epochs'"),
        (_classify, _lognorm_counts, {"n_hiden": (4,)}, "'n_hidden'"),
        (_classify, _lognorm_counts, {"erly_stopping": False}, "'early_stopping'"),
        (_deep_cluster, _counts, {"noise_sdd": 1.0}, "'noise_sd'"),
        (_deep_cluster, _counts, {"lr": 0.01}, "'cluster_lr' or 'pretrain_lr'"),
        (_deep_cluster, _counts, {"plan_kwargs": {}}, "'cluster_plan_kwargs' or"),
        (_perturb, _perturbation, {"kl_weigth": 0.1}, "'kl_weight'"),
        (_perturb, _perturbation, {"max_grad_nrom": 1.0}, "'max_grad_norm'"),
    ],
)
def test_misspelt_argument_is_named_before_any_work(run, data, typo, suggested, monkeypatch):
    """The error names the tool, the argument and the closest known ones, before a model is
    built (it came from Lightning's Trainer, after the data were prepared)."""
    adata = data()
    before = snapshot(adata)
    built = []
    for cls in (sn.models.Classifier, sn.models.DeepCluster, sn.models.ScGen):
        monkeypatch.setattr(cls, "setup_anndata", lambda *a, **k: built.append(1))
    name = next(iter(typo))
    with pytest.raises(TypeError, match=f"got unexpected argument {name!r} \\(did you mean") as err:
        run(adata, **typo)
    assert suggested in str(err.value)
    assert not built
    assert_unchanged(adata, before)


def test_image_features_misspelt_training_argument():
    section = synthetic_section()
    before = snapshot(section)
    with pytest.raises(TypeError, match="'max_epoch' \\(did you mean 'max_epochs'"):
        sn.tl.image_features(section, backbone="expression", max_epoch=2)
    assert_unchanged(section, before)


@pytest.mark.parametrize(
    "run, data, plan",
    [
        (_classify, _lognorm_counts, {"plan_kwargs": {"lr_patiense": 3}}),
        (_perturb, _perturbation, {"plan_kwargs": {"lr_patiense": 3}}),
        (_deep_cluster, _counts, {"cluster_plan_kwargs": {"lr_patiense": 3}}),
    ],
)
def test_misspelt_plan_argument_is_named_before_training(run, data, plan):
    """A misspelt training plan argument was ignored without a word by classify and
    perturb (their modules' losses take **kwargs) and recorded in uns as if used; each tool
    now names it and the closest known one, and leaves adata as it was."""
    adata = data()
    before = snapshot(adata)
    argument = next(iter(plan))
    with pytest.raises(TypeError, match=f"{argument} holds 'lr_patiense' \\(did you mean"):
        run(adata, **plan)
    assert_unchanged(adata, before)


def test_image_features_misspelt_plan_argument():
    section = synthetic_section()
    before = snapshot(section)
    with pytest.raises(TypeError, match="plan_kwargs holds 'lr_patiense'"):
        sn.tl.image_features(section, backbone="expression", plan_kwargs={"lr_patiense": 3})
    assert_unchanged(section, before)


def test_known_training_arguments_pass(monkeypatch):
    """Arguments of the model's train, scvi-tools' train and both Trainers are all known."""
    from scneural.tl._arguments import check_train_kwargs

    known = {
        "early_stopping_patience": 3,  # Classifier.train
        "datasplitter_kwargs": {},  # scvi-tools' train
        "log_every_n_steps": 1,  # scvi-tools' Trainer
        "gradient_clip_val": 1.0,  # Lightning's Trainer
        "callbacks": [],
    }
    check_train_kwargs(sn.tl.classify, known, sn.models.Classifier)
    check_train_kwargs(sn.tl.deep_cluster, {"pretrain_lr": 0.1}, sn.models.DeepCluster)


@pytest.fixture(scope="module")
def models():
    return {
        "classify": (_classify(max_epochs=1), _lognorm_counts),
        "deep_cluster": (_deep_cluster(), _counts),
        "perturb": (_perturb(return_model=True)[1], _perturbation),
    }


@pytest.mark.parametrize(
    "tool, arguments",
    [
        ("classify", {"max_epochs": 50}),
        ("classify", {"n_hidden": [64]}),
        ("classify", {"lr": 0.1}),
        ("classify", {"max_epoch": 3}),
        ("deep_cluster", {"pretrain_epochs": 5}),
        ("deep_cluster", {"n_latent": 99}),
        ("deep_cluster", {"foo": 1}),
        ("perturb", {"max_epochs": 77}),
        ("perturb", {"kl_weight": 0.1}),
        ("perturb", {"bogus": 1}),
    ],
)
def test_reuse_refuses_training_arguments(models, tool, arguments):
    """They would have no effect, yet were recorded in uns[key]['params'] as used."""
    model, data = models[tool]
    run = {"classify": sn.tl.classify, "deep_cluster": sn.tl.deep_cluster}.get(tool)
    adata = data()
    before = snapshot(adata)
    name = next(iter(arguments))
    with pytest.raises(ValueError, match=f"applies a trained model as it is: {name}="):
        if tool == "perturb":
            sn.tl.perturb(adata, **PERTURB, model=model, **arguments)
        else:
            run(adata, model=model, **arguments)
    assert_unchanged(adata, before)


def test_reuse_accepts_defaults_and_inference_arguments(models):
    """Arguments at their defaults, and those that apply to a trained model (batch_size of
    inference, the arithmetic of perturb), are accepted with model=."""
    model, data = models["classify"]
    adata = data()
    sn.tl.classify(
        adata,
        model=model,
        n_hidden=(512, 256, 128),
        dropout_rate=0.2,
        batch_size=64,
        enable_progress_bar=False,
    )
    assert "classify_label" in adata.obs
    model, data = models["perturb"]
    adata = data()
    sn.tl.perturb(adata, **PERTURB, model=model, residual=True, delta_cells="paired")
    assert adata.uns["perturb"]["params"]["model_reused"]


def test_deep_cluster_phases_take_their_own_learning_rates(monkeypatch):
    """A learning rate for one phase does not reach the other's optimizer (Adam at 1e-3
    and Adadelta at 1.0 by default: one lr for both cut the DEC phase's 1000x)."""
    seen = {}
    for name in ("_pretrain_plan", "_dec_plan"):
        original = getattr(sn.models.DeepCluster, name)

        def spy(self, lr, plan_kwargs, *args, _name=name, _original=original, **kwargs):
            seen[_name] = (lr, dict(plan_kwargs))
            return _original(self, lr, plan_kwargs, *args, **kwargs)

        monkeypatch.setattr(sn.models.DeepCluster, name, spy)
    _deep_cluster()
    assert seen == {"_pretrain_plan": (1e-3, {}), "_dec_plan": (1.0, {})}
    _deep_cluster(
        pretrain_lr=0.01,
        cluster_lr=0.5,
        pretrain_plan_kwargs={"n_epochs_kl_warmup": 5},
        cluster_plan_kwargs={"n_epochs_kl_warmup": 7},
    )
    assert seen == {
        "_pretrain_plan": (0.01, {"n_epochs_kl_warmup": 5}),
        "_dec_plan": (0.5, {"n_epochs_kl_warmup": 7}),
    }


@pytest.mark.parametrize("shared", [{"lr": 0.01}, {"plan_kwargs": {"lr": 0.01}}])
def test_deep_cluster_train_refuses_one_lr_for_both_phases(shared):
    adata = _counts()
    sn.models.DeepCluster.setup_anndata(adata)
    model = sn.models.DeepCluster(adata, n_clusters=3, n_hidden=(8,), n_latent=4)
    with pytest.raises(TypeError, match="pass pretrain_lr=/cluster_lr="):
        model.train(max_epochs=1, pretrain_epochs=1, **shared, **QUIET)
    assert not model.is_pretrained_


@pytest.mark.parametrize(
    "run, data, model_name",
    [
        (_classify, _lognorm_counts, "Classifier"),
        (_deep_cluster, _counts, "DeepCluster"),
        (_perturb, _perturbation, "ScGen"),
    ],
)
@pytest.mark.parametrize(
    "bad, error, match",
    [
        # Lightning said only "No supported gpu backend found!" when it built the trainer
        ({"accelerator": "gpu"}, ValueError, "'gpu' but no CUDA GPU is available here; pass"),
        ({"accelerator": "cuda"}, ValueError, "'cuda' but no CUDA GPU is available here; pass"),
        # a saved model's folder is most likely what a path as model= means
        (
            {"model": Path("saved")},
            TypeError,
            r"got \w*Path; to reuse a saved model, load it first: model=sn.models.{model_name}.load",
        ),
    ],
)
def test_bad_training_argument_says_what_to_do(
    run, data, model_name, bad, error, match, monkeypatch
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    adata = data()
    before = snapshot(adata)
    with pytest.raises(error, match=match.format(model_name=model_name)):
        run(adata, **bad)
    assert_unchanged(adata, before)


def test_mps_accelerator_without_an_apple_gpu_is_named(monkeypatch):
    import torch

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    adata = _lognorm_counts()
    with pytest.raises(ValueError, match="accelerator='mps' but no Apple GPU is available"):
        _classify(adata, accelerator="mps")


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize(
    "run, data, bad, match",
    [
        # used to fail inside the Lightning loop with torch's "DataLoader.__init__() got an
        # unexpected keyword argument"
        (
            _classify,
            _lognorm_counts,
            {"num_worker": 0},
            r"datasplitter_kwargs holds 'num_worker' \(did you",
        ),
        # used to fail with Python's "got multiple values for keyword argument
        # 'batch_size'", which did not say where to pass it
        (
            _perturb,
            _perturbation,
            {"batch_size": 64},
            "'batch_size', which train takes itself: pass batch",
        ),
    ],
)
def test_bad_datasplitter_kwargs_are_refused_before_training(run, data, bad, match, backend):
    adata = data()
    before = snapshot(adata)
    with pytest.raises(TypeError, match=match):
        run(adata, backend=backend, max_epochs=1, datasplitter_kwargs=bad)
    assert_unchanged(adata, before)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("drop_last", [False, True])
def test_datasplitter_kwargs_reach_the_loaders(backend, drop_last):
    batch_size = 32
    model = _classify(
        backend=backend,
        max_epochs=1,
        batch_size=batch_size,
        datasplitter_kwargs={"num_workers": 0, "drop_last": drop_last},
    )
    n_train = len(model.train_indices)
    assert n_train % batch_size != 0, "the split must leave a partial minibatch to drop"
    # drop_last leaves out the last, partial minibatch: 3 batches of 32 cells instead of 4
    full = n_train // batch_size
    expected = full if drop_last else full + 1
    assert model.trainer.num_training_batches == expected
    assert len(model.history["train_loss"]) == 1


def test_image_features_model_given_as_a_path_says_how_to_load_it(tmp_path):
    section = synthetic_section()
    with pytest.raises(
        TypeError, match=r"load it first: model=sn.models.ImageFeatureExtractor.load\("
    ):
        sn.tl.image_features(section, model=str(tmp_path))


def test_gpu_accelerator_is_an_apple_gpu_when_there_is_one(monkeypatch):
    """Lightning's "gpu" takes an Apple GPU when there is no CUDA one: not refused."""
    import torch

    from scneural.models._base import check_accelerator_available
    from scneural.models.image._extractor import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    check_accelerator_available("gpu")
    check_accelerator_available("mps")
    assert pick_device("gpu") == torch.device("mps")
    with pytest.raises(ValueError, match="accelerator='cuda' but no CUDA GPU"):
        check_accelerator_available("cuda")


@pytest.mark.parametrize(
    "run, data, key",
    [
        (_classify, _lognorm_counts, "classify"),
        (_deep_cluster, _counts, "deep_cluster"),
        (_perturb, _perturbation, "perturb"),
    ],
)
def test_numpy_integers_are_integers(run, data, key):
    """max_epochs=np.int64(1) (from np.arange, a parameter grid...) failed inside Lightning
    with a bare AssertionError, and batch_size=np.int64(32) as torch's "batch_size should
    be a positive integer value, but got batch_size=32"."""
    adata = data()
    run(adata, max_epochs=np.int64(1), batch_size=np.int64(32))
    params = adata.uns[key]["params"]
    assert type(params["max_epochs"]) is int and type(params["batch_size"]) is int
