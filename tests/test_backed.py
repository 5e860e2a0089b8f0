"""Every tool runs on backed AnnData (``read_h5ad(..., backed="r")``) and gives the same
results as on the same cells in memory (DESIGN: minibatches straight from backed data)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

import scneural as sn
from conftest import FAST_EXPRESSION_BACKBONE, synthetic_section

FAST = {"accelerator": "cpu", "enable_progress_bar": False, "random_state": 0}


def _memory_copy(adata: ad.AnnData) -> ad.AnnData:
    """A copy of ``adata`` with X as a CSR matrix (the in-memory twin)."""
    memory = adata.copy()
    memory.X = sparse.csr_matrix(memory.X)
    return memory


def _backed_twin(adata: ad.AnnData, path) -> ad.AnnData:
    """``adata`` written to ``path`` and opened backed; X sparse on disk, as in practice."""
    _memory_copy(adata).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    assert backed.isbacked
    return backed


def _assert_x_unchanged(backed: ad.AnnData, original: ad.AnnData) -> None:
    """The object is still backed and its matrix on disk still equals the input's."""
    assert backed.isbacked
    expected = original.X.toarray() if sparse.issparse(original.X) else np.asarray(original.X)
    np.testing.assert_array_equal(backed.to_memory().X.toarray(), expected)


def test_deep_cluster_backed(counts_adata, tmp_path):
    path = tmp_path / "counts.h5ad"
    backed = _backed_twin(counts_adata, path)
    memory = _memory_copy(counts_adata)
    kwargs = {"n_top_genes": 100, "pretrain_epochs": 3, "max_epochs": 2, **FAST}
    sn.tl.deep_cluster(memory, 3, **kwargs)
    sn.tl.deep_cluster(backed, 3, **kwargs)
    np.testing.assert_allclose(
        backed.obsm["X_deep_cluster"], memory.obsm["X_deep_cluster"], rtol=1e-5, atol=1e-5
    )
    assert (backed.obs["deep_cluster"] == memory.obs["deep_cluster"]).all()
    assert backed.obs["deep_cluster"].dtype == "category"
    _assert_x_unchanged(backed, counts_adata)


def test_classify_backed(lognorm_adata, tmp_path):
    path = tmp_path / "lognorm.h5ad"
    lognorm_adata.obs["group"] = lognorm_adata.obs["group"].astype("category")
    backed = _backed_twin(lognorm_adata, path)
    memory = _memory_copy(lognorm_adata)
    kwargs = {"max_epochs": 3, **FAST}
    sn.tl.classify(memory, "group", **kwargs)
    sn.tl.classify(backed, "group", **kwargs)
    np.testing.assert_allclose(
        backed.obsm["classify_proba"].to_numpy(),
        memory.obsm["classify_proba"].to_numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    assert (backed.obs["classify_label"] == memory.obs["classify_label"]).all()
    _assert_x_unchanged(backed, lognorm_adata)


def test_backed_query_with_other_genes_is_aligned(lognorm_adata, tmp_path):
    """model= reuse aligns a query's genes to the model's; backed, in row chunks."""
    lognorm_adata.obs["group"] = lognorm_adata.obs["group"].astype("category")
    model = sn.tl.classify(lognorm_adata.copy(), "group", max_epochs=2, **FAST)
    query = lognorm_adata[:, lognorm_adata.var_names[::-1][:-5]].copy()  # reordered, 5 missing
    memory = _memory_copy(query)
    backed = _backed_twin(query, tmp_path / "query.h5ad")
    with pytest.warns(UserWarning, match="5 of the model.s 200 genes are missing"):
        sn.tl.classify(memory, model=model, **FAST)
    with pytest.warns(UserWarning, match="5 of the model.s 200 genes are missing"):
        sn.tl.classify(backed, model=model, **FAST)
    np.testing.assert_allclose(
        backed.obsm["classify_proba"].to_numpy(),
        memory.obsm["classify_proba"].to_numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    _assert_x_unchanged(backed, query)


@pytest.mark.parametrize("residual", [False, True])
def test_perturb_backed(lognorm_adata, tmp_path, residual):
    adata = lognorm_adata.copy()
    rng = np.random.default_rng(0)
    adata.obs["condition"] = np.where(rng.random(adata.n_obs) < 0.5, "ctrl", "stim")
    held = (adata.obs["group"].astype(str) == "g0") & (adata.obs["condition"] == "stim")
    adata = adata[~held.to_numpy()].copy()
    path = tmp_path / "perturb.h5ad"
    backed = _backed_twin(adata, path)
    memory = _memory_copy(adata)
    kwargs = {
        "condition_key": "condition",
        "control": "ctrl",
        "perturbed": "stim",
        "cell_type_key": "group",
        "predict": "g0",
        "residual": residual,
        "max_epochs": 2,
        **FAST,
    }
    pred_memory = sn.tl.perturb(memory, **kwargs)
    pred_backed = sn.tl.perturb(backed, **kwargs)
    assert not pred_backed.isbacked
    assert list(pred_backed.obs_names) == list(pred_memory.obs_names)
    np.testing.assert_allclose(pred_backed.X, pred_memory.X, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        backed.obsm["X_perturb"], memory.obsm["X_perturb"], rtol=1e-5, atol=1e-5
    )
    _assert_x_unchanged(backed, adata)


def test_image_features_expression_backbone_backed(tmp_path):
    section = synthetic_section()
    path = tmp_path / "section.h5ad"
    backed = _backed_twin(section, path)
    memory = _memory_copy(section)
    kwargs = {**FAST_EXPRESSION_BACKBONE, "max_epochs": 2}
    sn.tl.image_features(memory, **kwargs)
    sn.tl.image_features(backed, **kwargs)
    np.testing.assert_allclose(
        backed.obsm["X_image_features"], memory.obsm["X_image_features"], rtol=1e-5, atol=1e-5
    )
    # the gene association reads the backed expression too
    table_memory = sn.tl.image_gene_association(memory, n_pcs=2)
    table_backed = sn.tl.image_gene_association(backed, n_pcs=2)
    assert list(table_backed["gene"]) == list(table_memory["gene"])
    np.testing.assert_allclose(table_backed["coef"], table_memory["coef"], rtol=1e-4, atol=1e-6)
    _assert_x_unchanged(backed, section)
