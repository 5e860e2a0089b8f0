"""sn.datasets: loading by name, the scDeepCluster download path, bundled counts."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
from scipy import sparse

import scneural as sn
from scneural.datasets import _registry

TOY = _registry.DatasetInfo("toy", "toy", (3, 2), "0" * 64, labels={"kind": 2})


def _toy_file(directory, n_obs=3):
    adata = ad.AnnData(sparse.csr_matrix(np.ones((n_obs, 2), dtype=np.float32)))
    adata.obs["kind"] = ["a", "b", "a"][:n_obs]
    adata.write_h5ad(directory / "toy.h5ad")


def test_load_from_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SCNEURAL_DATA_DIR", str(tmp_path))
    monkeypatch.setitem(_registry.REGISTRY, "toy", TOY)
    _toy_file(tmp_path)
    loaded = sn.datasets.load("toy")
    assert loaded.shape == (3, 2)
    assert sn.datasets.load("toy", backed=True).isbacked
    assert sn.datasets.available().loc["toy", "local_path"] == str(tmp_path / "toy.h5ad")


def test_load_checks_a_local_file_against_the_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("SCNEURAL_DATA_DIR", str(tmp_path))
    monkeypatch.setitem(_registry.REGISTRY, "toy", TOY)
    _toy_file(tmp_path, n_obs=2)
    with pytest.raises(ValueError, match=r"expected \(3, 2\).*toy.h5ad\); replace or delete"):
        sn.datasets.load("toy")


def test_the_shared_files_pass_the_registry_checks(data_dir, monkeypatch):
    monkeypatch.setenv("SCNEURAL_DATA_DIR", str(data_dir))
    for name in sn.datasets.REGISTRY:
        if (data_dir / f"{name}.h5ad").is_file():
            assert sn.datasets.load(name, backed=True).shape == sn.datasets.REGISTRY[name].shape


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network: pooch.retrieve fails as it does offline; data and cache dirs in tmp_path."""
    monkeypatch.setenv("SCNEURAL_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_registry, "cache_dir", lambda: tmp_path / "cache")

    def no_network(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr("pooch.retrieve", no_network)
    return tmp_path


def test_offline_download_says_where_to_put_the_file(offline):
    tmp_path = offline
    with pytest.raises(
        RuntimeError, match="could not download data set 'worm_neuron_cell'"
    ) as info:
        sn.datasets.load("worm_neuron_cell")
    assert "put worm_neuron_cell.h5ad in one of the searched directories" in str(info.value)
    assert str(tmp_path) in str(info.value) and "SCNEURAL_DATA_DIR" in str(info.value)


def test_available_warns_of_a_data_dir_that_is_not_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("SCNEURAL_DATA_DIR", str(tmp_path / "missing"))
    with pytest.warns(UserWarning, match=r"SCNEURAL_DATA_DIR is .*missing.*not a directory"):
        table = sn.datasets.available()
    assert len(table) == len(sn.datasets.REGISTRY)  # the table is still given
    assert not any("missing" in path for path in table["local_path"].dropna())


def test_unknown_name():
    with pytest.raises(KeyError, match="unknown data set 'nope'"):
        sn.datasets.load("nope")


def test_missing_without_url_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SCNEURAL_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_registry, "cache_dir", lambda: tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="put pbmc3k_annotated.h5ad in"):
        sn.datasets.load("pbmc3k_annotated")


def _fake_scdeepcluster_h5(path, n_obs, n_vars, n_classes):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as handle:
        handle["X"] = rng.poisson(1.0, size=(n_obs, n_vars)).astype(np.float64)
        handle["Y"] = np.arange(n_obs) % n_classes


def test_download_converts_and_checks(tmp_path, monkeypatch):
    info = _registry.DatasetInfo("toy", "toy", (20, 5), "0" * 64, "https://example/x.h5", {"Y": 4})

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        assert url == info.url
        target = path / fname
        _fake_scdeepcluster_h5(target, 20, 5, 4)
        return str(target)

    monkeypatch.setattr("pooch.retrieve", fake_retrieve)
    path = _registry.download(info, directory=tmp_path)
    adata = ad.read_h5ad(path)
    assert adata.shape == (20, 5) and adata.obs["Y"].nunique() == 4
    assert sparse.issparse(adata.X)

    wrong = _registry.DatasetInfo("toy2", "toy", (21, 5), "0" * 64, "https://example/x.h5", {})
    with pytest.raises(ValueError, match="not the published one"):
        _registry.download(wrong, directory=tmp_path)


def test_registry_knows_the_shared_sets():
    for name in [
        "worm_neuron_cell",
        "pbmc3k_annotated",
        "kang_ifnb_sub",
        "visium_mouse_brain_crop",
    ]:
        assert name in sn.datasets.REGISTRY
    assert sn.datasets.REGISTRY["worm_neuron_cell"].url.startswith("https://github.com/ttgump/")


def test_pbmc68k_reduced_counts():
    adata = sn.datasets.pbmc68k_reduced_counts()
    counts = adata.X.toarray()
    assert np.all(counts == np.round(counts)) and counts.min() >= 0
    # the counts reproduce the bundled log-normalised values
    lib = adata.obs["n_counts"].to_numpy()[:, None]
    rebuilt = np.log1p(counts / lib * 1e4)
    np.testing.assert_allclose(rebuilt, adata.layers["lognorm"].toarray(), atol=0.05)
    assert "bulk_labels" in adata.obs


def test_synthetic_counts_structure():
    adata = sn.datasets.synthetic_counts(n_obs=300, n_vars=60, n_groups=3, n_batches=2, seed=1)
    assert adata.shape == (300, 60)
    assert set(adata.obs["group"].cat.categories) == {"g0", "g1", "g2"}
    markers = adata.var_names[adata.var["marker_of"] == "g1"]
    in_g1 = (adata.obs["group"] == "g1").to_numpy()
    X = adata[:, markers].X.toarray()
    assert X[in_g1].mean() > 2 * X[~in_g1].mean()


def test_a_corrupt_local_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SCNEURAL_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kang_ifnb_sub.h5ad").write_bytes(b"\x89HDF\r\n a partial copy")
    with pytest.raises(ValueError, match="could not be read as .h5ad") as info:
        sn.datasets.load("kang_ifnb_sub")
    assert str(tmp_path / "kang_ifnb_sub.h5ad") in str(info.value)
    assert "replace or delete that file" in str(info.value)


def test_downloads_go_to_the_data_dir_and_a_bad_one_is_not_kept(tmp_path, monkeypatch):
    """DESIGN: the data directory is $SCNEURAL_DATA_DIR (default a user cache)."""
    data = tmp_path / "data"
    monkeypatch.setenv("SCNEURAL_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)
    info = _registry.DatasetInfo("toy", "toy", (20, 5), "0" * 64, "https://example/x.h5", {"Y": 4})
    pages = []

    def proxy_error_page(url, known_hash, fname, path, progressbar):
        target = Path(path) / fname
        target.write_bytes(b"<html>proxy error</html>")
        pages.append(target)
        return str(target)

    monkeypatch.setattr("pooch.retrieve", proxy_error_page)
    with pytest.raises(ValueError, match="is not the published file.*deleted, try again"):
        _registry.download(info)
    assert pages[0].parent == data and not pages[0].exists()

    def good(url, known_hash, fname, path, progressbar):
        _fake_scdeepcluster_h5(Path(path) / fname, 20, 5, 4)
        return str(Path(path) / fname)

    monkeypatch.setattr("pooch.retrieve", good)
    assert _registry.download(info) == data / info.filename


def test_download_takes_a_name_as_load_does(tmp_path, monkeypatch):
    monkeypatch.setenv("SCNEURAL_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    info = _registry.DatasetInfo("toy", "toy", (20, 5), "0" * 64, "https://example/x.h5", {"Y": 4})
    monkeypatch.setitem(_registry.REGISTRY, "toy", info)
    urls = []

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        urls.append(url)
        _fake_scdeepcluster_h5(Path(path) / fname, 20, 5, 4)
        return str(Path(path) / fname)

    monkeypatch.setattr("pooch.retrieve", fake_retrieve)
    assert sn.datasets.download("toy") == tmp_path / "toy.h5ad"
    assert urls == [info.url] and sn.datasets.load("toy").shape == (20, 5)


def test_download_of_an_unknown_name_lists_the_known_ones(tmp_path, monkeypatch):
    target = tmp_path / "out"
    with pytest.raises(KeyError, match="unknown data set 'worm'.*worm_neuron_cell"):
        sn.datasets.download("worm", directory=target)
    assert not target.exists()


@pytest.mark.parametrize("as_name", [True, False])
def test_download_without_url_says_where_to_put_it(tmp_path, monkeypatch, as_name):
    monkeypatch.setenv("SCNEURAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_registry, "cache_dir", lambda: tmp_path / "cache")

    def must_not_download(*args, **kwargs):
        raise AssertionError("pooch.retrieve called for a set without URL")

    monkeypatch.setattr("pooch.retrieve", must_not_download)
    dataset = "kang_ifnb_sub" if as_name else sn.datasets.REGISTRY["kang_ifnb_sub"]
    with pytest.raises(FileNotFoundError, match="'kang_ifnb_sub' has no public download") as info:
        sn.datasets.download(dataset)
    assert "put kang_ifnb_sub.h5ad in one of the searched directories" in str(info.value)
    assert not (tmp_path / "data").exists() and not (tmp_path / "cache").exists()


def test_offline_message_names_the_served_h5_which_is_reused(offline, monkeypatch):
    """The URL serves worm_neuron_cell.h5; put in the data dir it is converted, no download."""
    tmp_path = offline
    with pytest.raises(RuntimeError) as info:
        sn.datasets.download("worm_neuron_cell")
    message = str(info.value)
    assert (
        "worm_neuron_cell.h5," in message
        and sn.datasets.REGISTRY["worm_neuron_cell"].url in message
    )
    assert f"in {tmp_path}, where it is converted to worm_neuron_cell.h5ad" in message

    # what the message says works: the real pooch reuses a present .h5 without downloading
    monkeypatch.undo()
    monkeypatch.setenv("SCNEURAL_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    info = _registry.DatasetInfo(
        "toy", "toy", (20, 5), "0" * 64, "https://invalid.example/toy.h5", {"Y": 4}
    )
    monkeypatch.setitem(_registry.REGISTRY, "toy", info)
    _fake_scdeepcluster_h5(tmp_path / "toy.h5", 20, 5, 4)
    assert sn.datasets.load("toy").shape == (20, 5)
    assert (tmp_path / "toy.h5ad").is_file()
