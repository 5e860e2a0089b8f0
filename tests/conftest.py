"""Shared fixtures: small synthetic data (always) and the real data sets (skip if absent)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from anndata import AnnData

matplotlib.use("Agg")

# 2 cores shared with other work: one torch thread is faster and steadier here
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch

torch.set_num_threads(1)

import scneural as sn  # noqa: E402


def _jax_available() -> bool:
    """Whether the optional JAX extra (jax, flax, optax) is installed."""
    try:
        from scneural.models._jax import require_jax

        require_jax()
    except ImportError:
        return False
    return True


HAS_JAX = _jax_available()
if HAS_JAX:
    import jax

    # XLA compilation dominates the small JAX trainings of the tests on CPU; the persistent
    # cache lets runs with the same shapes (same-seed repeats, later sessions) reuse it
    jax.config.update(
        "jax_compilation_cache_dir", str(Path(tempfile.gettempdir()) / "scneural-jax-cache")
    )
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


@pytest.fixture(scope="module", params=["torch", pytest.param("jax", marks=pytest.mark.jax)])
def backend(request) -> str:
    """Each backend of the tl tools in turn (module scope: a module's trained fixtures are
    built once per backend); the JAX one skips when the JAX extra is not installed."""
    if request.param == "jax" and not HAS_JAX:
        pytest.skip('the JAX extra is not installed (pip install "scneural[jax]")')
    return request.param


def _shared_data_dir() -> Path | None:
    candidates = []
    if os.environ.get("SCNEURAL_DATA_DIR"):
        candidates.append(Path(os.environ["SCNEURAL_DATA_DIR"]))
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


DATA_DIR = _shared_data_dir()


@pytest.fixture
def data_dir() -> Path:
    """Folder with the real data sets; skips the test when there is none."""
    if DATA_DIR is None:
        pytest.skip("real data sets not found (set SCNEURAL_DATA_DIR)")
    return DATA_DIR


def load_real(name: str):
    """Load a real data set from the data folder, skipping the test if it is absent."""
    if DATA_DIR is None or not (DATA_DIR / f"{name}.h5ad").is_file():
        pytest.skip(f"{name}.h5ad not found (set SCNEURAL_DATA_DIR)")
    return sc.read_h5ad(DATA_DIR / f"{name}.h5ad")


@pytest.fixture
def counts_adata():
    """600 cells x 200 genes of NB counts in 3 groups with distinct markers (X = counts)."""
    return sn.datasets.synthetic_counts(n_obs=600, n_vars=200, n_groups=3, seed=0)


def log_normalise(adata):
    """``adata`` with X normalised to 10,000 counts per cell and log1p-ed, in place."""
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


@pytest.fixture
def lognorm_adata(counts_adata):
    """The synthetic counts log-normalised in X (counts kept in layers['counts'])."""
    return log_normalise(counts_adata.copy())


def snapshot(adata) -> dict:
    """Everything a failed tool call must leave unchanged."""
    return {
        "obs": adata.obs.copy(),
        "obsm": set(adata.obsm.keys()),
        "uns": set(adata.uns.keys()),
        "layers": set(adata.layers.keys()),
        "X": adata.X.copy(),
        "var": adata.var.copy(),
    }


def assert_unchanged(adata, before: dict) -> None:
    """Assert ``adata`` equals the snapshot taken before a failed call."""
    import pandas as pd

    pd.testing.assert_frame_equal(adata.obs, before["obs"])
    pd.testing.assert_frame_equal(adata.var, before["var"])
    assert set(adata.obsm.keys()) == before["obsm"]
    assert set(adata.uns.keys()) == before["uns"]
    assert set(adata.layers.keys()) == before["layers"]
    x_now = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    x_then = before["X"].toarray() if hasattr(before["X"], "toarray") else np.asarray(before["X"])
    np.testing.assert_array_equal(x_now, x_then)


def randomize_batch_norm(module: torch.nn.Module) -> None:
    """Give every BatchNorm1d of a torch module non-trivial running statistics and affine
    parameters, so tests that copy weights across backends check that these are copied."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.BatchNorm1d):
                layer.running_mean.uniform_(-0.5, 0.5)
                layer.running_var.uniform_(0.5, 2.0)
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.uniform_(-0.2, 0.2)


def record_train_kwargs(monkeypatch, model_cls) -> dict:
    """Make ``model_cls.train`` record the keyword arguments it gets (and still train)."""
    seen: dict = {}
    original = model_cls.train

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(model_cls, "train", spy)
    return seen


# --- a synthetic Visium-like section (image_features) ---------------------------------

SCALE = 0.5  # hires pixels per full-resolution pixel
SPACING = 40  # hires pixels between spots


def synthetic_section(seed: int = 0, n_genes: int = 30) -> AnnData:
    """A 240x320 image: left half red with fine stripes, right half blue and smooth.

    Spots on a 40 px grid (plus one near the border); the planted gene ``marker`` is
    expressed higher under the left region.
    """
    rng = np.random.default_rng(seed)
    height, width = 240, 320
    image = np.zeros((height, width, 3), dtype=np.float64)
    stripes = 60 * (np.arange(width) % 4 < 2)
    image[:, : width // 2] = [200, 80, 90]
    image[:, : width // 2, :] += stripes[None, : width // 2, None]
    image[:, width // 2 :] = [90, 110, 210]
    image += rng.normal(0, 8, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    xs, ys = np.meshgrid(np.arange(20, width, SPACING), np.arange(20, height, SPACING))
    centers = np.column_stack([xs.ravel(), ys.ravel()]).astype(float)
    centers = np.vstack([centers, [[6.0, 230.0]]])  # patch reaches over the border
    region = (centers[:, 0] < width // 2).astype(int)
    n = centers.shape[0]
    counts = rng.poisson(5.0, size=(n, n_genes)).astype(np.float32)
    counts[:, 0] = rng.poisson(np.where(region == 1, 40.0, 4.0))
    adata = AnnData(
        X=counts,
        obs=pd.DataFrame(
            {"region": pd.Categorical(region.astype(str))},
            index=[f"spot{i}" for i in range(n)],
        ),
        var=pd.DataFrame(index=["marker"] + [f"gene{i}" for i in range(1, n_genes)]),
    )
    adata.obsm["spatial"] = centers / SCALE  # full-resolution pixels
    adata.uns["spatial"] = {
        "lib": {
            "images": {"hires": image},
            "scalefactors": {
                "tissue_hires_scalef": SCALE,
                "spot_diameter_fullres": SPACING / SCALE,
            },
        }
    }
    return adata


#: a small CNN trained on the section's own expression PCs, seconds on a CPU
FAST_EXPRESSION_BACKBONE = {
    "backbone": "expression",
    "input_size": 32,
    "n_latent": 16,
    "n_comps": 4,
    "expression_pcs": 5,
    "batch_size": 16,
    "enable_progress_bar": False,
}
