"""Real data sets by name: from a data directory, else downloaded from their public source."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

DATA_DIR_ENV = "SCNEURAL_DATA_DIR"

_SCDEEPCLUSTER = "https://github.com/ttgump/scDeepCluster/raw/ff7f29d003be7112c6a3dcab37c44d461423647d/scRNA-seq%20data/"


@dataclass(frozen=True)
class DatasetInfo:
    """What scneural knows about one data set."""

    name: str
    description: str
    shape: tuple[int, int]
    #: of the reference ``.h5ad`` in ``../shared/data``, for provenance; a file converted
    #: from a download differs in bytes, so :func:`load` checks shape and classes instead
    sha256: str
    url: str | None = None
    labels: dict[str, int] = field(default_factory=dict)  # obs column -> number of classes

    @property
    def filename(self) -> str:
        return f"{self.name}.h5ad"


REGISTRY: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo(
            "worm_neuron_cell",
            "C. elegans neurons (sci-RNA-seq), scDeepCluster benchmark",
            (4186, 13488),
            "62a711c1643ab1cbd9efc9574fe5834f7fdcb773e5ee6afa47bb27c07e976100",
            _SCDEEPCLUSTER + "worm_neuron_cell.h5",
            {"Y": 10},
        ),
        DatasetInfo(
            "mouse_bladder_cell_select_2100",
            "mouse bladder (Microwell-seq), scDeepCluster benchmark",
            (2100, 20670),
            "e7d898d54a1113bdb744f7e2d201b1426f21d68d0c7d549374dbd23655a9a4c6",
            _SCDEEPCLUSTER + "mouse_bladder_cell_select_2100.h5",
            {"Y": 16},
        ),
        DatasetInfo(
            "pbmc_10x_scdeepcluster_top2000",
            "10x PBMC 4k, scDeepCluster/scDCC '10X PBMC', top 2000 genes",
            (4271, 2000),
            "80eec61f697af1dca99eb3178cd922dc2c7b4999bca691febcf792ee474f5fbd",
            labels={"Y": 8},
        ),
        DatasetInfo(
            "kang_ifnb_sub",
            "Kang et al. 2018 PBMC, control vs IFN-beta (scGen benchmark), 2000 cells",
            (2000, 13215),
            "d736a23412484731ff904bc1330dd2a21d50501f2badc7351ed53a05b2c08928",
            labels={"stim": 2, "seurat_annotations": 13},
        ),
        DatasetInfo(
            "pbmc3k_annotated",
            "10x PBMC 3k, raw counts with the standard annotation",
            (2700, 32738),
            "57dea8366eea40b10a6828c26b90d7b42a53933ea3602d1eb59ccfd012f719e9",
            labels={"seurat_annotations": 9},
        ),
        DatasetInfo(
            "cellbench_3cl_celseq2_dropseq",
            "CellBench 3 lung cancer cell lines on CEL-seq2 and Drop-seq",
            (499, 15073),
            "dcd3401a1245c8de93253bba1b24ae9e4d9064babf8a55a6e0aeff1eac034f56",
            labels={"cell_line": 3, "batch": 2},
        ),
        DatasetInfo(
            "st_mouse_olfactory_bulb_mob1",
            "legacy ST of mouse olfactory bulb (section 1) with its H&E image",
            (1923, 1000),
            "a5e3ee9431840e594f045c743af409332682c08ec33a1ef2e828a1b5a2a56a51",
        ),
        DatasetInfo(
            "st_mouse_olfactory_bulb_mob2",
            "legacy ST of mouse olfactory bulb (section 2) with its H&E image",
            (1925, 1000),
            "a5f5d552c1022787ca69ee5ff0d5701e4ab0786f4618b56abcbdeb6483f14b1d",
        ),
        DatasetInfo(
            "visium_mouse_brain_crop",
            "10x Visium mouse brain, 49-spot crop with its full-resolution H&E crop",
            (49, 1999),
            "cfaca33726c02acf7423abe1bda92d0c5a745d063e4d5d370457a08129eda99e",
            labels={"leiden": 5},
        ),
    ]
}


def available() -> pd.DataFrame:
    """The known data sets, whether each is found locally, and where it can be downloaded.

    Returns
    -------
    pandas.DataFrame
        One row per data set of :data:`REGISTRY`, indexed by ``name``: its
        ``description``, ``local_path`` (the file :func:`load` would read, searched in
        :func:`data_dirs`; ``None`` when absent) and ``downloadable`` (bool: whether it has
        a public source :func:`load` can fetch).

    Warns
    -----
    UserWarning
        If ``$SCNEURAL_DATA_DIR`` is set to a path that is not a directory (a typo leaves
        every set without a ``local_path`` and gave no other sign).
    """
    env = _env_data_dir()
    if env is not None and not env.is_dir():
        warnings.warn(
            f"${DATA_DIR_ENV} is {str(env)!r}, which is not a directory, so no data set is "
            "found there; check the path (download() creates it on its first download)",
            UserWarning,
            stacklevel=2,
        )
    rows = []
    for info in REGISTRY.values():
        path = _find_local(info)
        rows.append(
            {
                "name": info.name,
                "description": info.description,
                "local_path": str(path) if path else None,
                "downloadable": info.url is not None,
            }
        )
    return pd.DataFrame(rows).set_index("name")


def data_dirs() -> list[Path]:
    """Directories searched, in order: ``$SCNEURAL_DATA_DIR``, ``../shared/data``, the cache.

    Returns
    -------
    list[pathlib.Path]
        ``$SCNEURAL_DATA_DIR`` (only when set; ``~`` expanded), ``../shared/data``
        (relative to the current working directory) and :func:`cache_dir`. They need not
        exist.
    """
    env = _env_data_dir()
    dirs = [env] if env is not None else []
    dirs.append(Path.cwd().parent / "shared" / "data")
    dirs.append(cache_dir())
    return dirs


def _env_data_dir() -> Path | None:
    """``$SCNEURAL_DATA_DIR``, when set."""
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The user cache directory where downloads are kept.

    Returns
    -------
    pathlib.Path
        pooch's ``os_cache("scneural")`` (e.g. ``~/.cache/scneural`` on Linux); it is
        created by the first download, not here.
    """
    import pooch

    return Path(pooch.os_cache("scneural"))


def _find_local(info: DatasetInfo) -> Path | None:
    for directory in data_dirs():
        candidate = directory / info.filename
        if candidate.is_file():
            return candidate
    return None


def load(name: str, *, backed: bool = False) -> ad.AnnData:
    """Load a real data set by name.

    Looks for ``{name}.h5ad`` in ``$SCNEURAL_DATA_DIR``, then ``../shared/data``, then the
    user cache directory; if absent and the data set has a public source, downloads it with
    pooch into ``$SCNEURAL_DATA_DIR`` when set, else the cache, and converts it to ``.h5ad``
    (:func:`download`); without a public source it raises ``FileNotFoundError``.

    Parameters
    ----------
    name
        One of :func:`available`'s names.
    backed
        Open the file in backed mode (``"r"``) instead of reading it into memory.

    Returns
    -------
    The AnnData with raw integer counts in ``X``.
    """
    info = _lookup(name)
    path = _find_local(info)
    if path is None:
        if info.url is None:
            raise FileNotFoundError(
                f"data set {name!r} was not found and has no public download; {_where_to_put(info)}"
            )
        path = download(info)
    try:
        adata = ad.read_h5ad(path, backed="r" if backed else None)
    except Exception as error:  # corrupt, truncated or not HDF5 at all
        raise ValueError(
            f"{name}: {path} could not be read as .h5ad ({type(error).__name__}: {error}); "
            "replace or delete that file"
        ) from error
    try:
        check_content(adata, info)
    except ValueError as error:
        raise ValueError(f"{error} ({path}); replace or delete that file") from None
    return adata


def _lookup(name: str) -> DatasetInfo:
    """The registry entry of ``name``; ``KeyError`` listing the known names otherwise."""
    if name not in REGISTRY:
        raise KeyError(f"unknown data set {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name]


def _download_dir(directory: str | Path | None = None) -> Path:
    """Where :func:`download` writes: ``directory``, else ``$SCNEURAL_DATA_DIR``, else the cache."""
    return Path(directory or _env_data_dir() or cache_dir())


def _where_to_put(info: DatasetInfo, directory: str | Path | None = None) -> str:
    """Where a user can place the file by hand (the directories :func:`load` searches).

    For a downloadable set, also the original file its URL serves (scDeepCluster ``.h5``):
    placed in the download directory, pooch reuses it and :func:`download` converts it.
    """
    searched = ", ".join(str(searched_dir) for searched_dir in data_dirs())
    message = f"put {info.filename} in one of the searched directories ({searched})"
    if info.url is not None:
        message += (
            f", or the file {info.url} serves ({info.name}.h5, scDeepCluster format) in "
            f"{_download_dir(directory)}, where it is converted to {info.filename}"
        )
    return f"{message}; set ${DATA_DIR_ENV} to use another directory"


def download(name: str | DatasetInfo, directory: str | Path | None = None) -> Path:
    """Download a data set with pooch and convert the scDeepCluster ``.h5`` to ``.h5ad``.

    The original files' checksums are not published; the converted data is checked
    against the recorded shape and number of classes instead. A ``{name}.h5`` already in
    ``directory`` is reused (not downloaded again) and converted.

    Parameters
    ----------
    name
        One of :func:`available`'s names (those with ``downloadable`` true), or a
        :class:`DatasetInfo` such as an entry of :data:`REGISTRY`, with a ``url``.
    directory
        Folder to write into (created if needed); ``None``: ``$SCNEURAL_DATA_DIR`` when
        set, else :func:`cache_dir`. The downloaded ``{name}.h5`` stays there next to
        the converted ``.h5ad``.

    Returns
    -------
    pathlib.Path
        The written ``directory / "{name}.h5ad"``.

    Raises
    ------
    KeyError
        If ``name`` is not a known data set (the message lists the known names).
    FileNotFoundError
        If the data set has no public download (``url`` is ``None``); the message says
        where to put its ``.h5ad`` by hand. Nothing is created on disk.
    RuntimeError
        If the download fails (no network, HTTP error); the message says where the file
        can be put by hand.
    ValueError
        If the downloaded file cannot be read or converted, or its shape or classes are
        not the recorded ones; the download is then deleted.
    """
    import pooch

    info = name if isinstance(name, DatasetInfo) else _lookup(name)
    if info.url is None:
        raise FileNotFoundError(
            f"data set {info.name!r} has no public download; {_where_to_put(info)}"
        )
    directory = _download_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        raw = pooch.retrieve(
            info.url, known_hash=None, fname=f"{info.name}.h5", path=directory, progressbar=False
        )
    except Exception as error:  # no network, proxy, HTTP error: say where the file can go
        raise RuntimeError(
            f"could not download data set {info.name!r} from {info.url} "
            f"({type(error).__name__}: {error}); {_where_to_put(info, directory)}"
        ) from error
    try:
        adata = read_scdeepcluster_h5(raw)
        check_content(adata, info)
    except Exception as error:  # a bad earlier download would otherwise be reused forever
        Path(raw).unlink(missing_ok=True)
        raise ValueError(
            f"the download of {info.name!r} ({raw}) is not the published file "
            f"({type(error).__name__}: {error}); it was deleted, try again"
        ) from error
    target = directory / info.filename
    adata.write_h5ad(target)
    return target


def read_scdeepcluster_h5(path: str | Path) -> ad.AnnData:
    """Read an scDeepCluster ``.h5`` file (datasets ``X``: counts, ``Y``: labels).

    Parameters
    ----------
    path
        The ``.h5`` file (HDF5 with a cells x genes dataset ``X`` and a label per cell in
        ``Y``).

    Returns
    -------
    anndata.AnnData
        The counts in ``X`` (CSR, float32), the labels in ``obs["Y"]`` (categorical,
        integer labels as strings), cells named ``cell0``, ``cell1``, ... and genes
        ``gene0``, ``gene1``, ... (the files carry no names).
    """
    import h5py

    with h5py.File(path, "r") as handle:
        counts = np.asarray(handle["X"], dtype=np.float32)
        labels = np.asarray(handle["Y"]).ravel()
    adata = ad.AnnData(X=sparse.csr_matrix(counts))
    adata.obs["Y"] = pd.Categorical(labels.astype(int).astype(str))
    adata.obs_names = [f"cell{i}" for i in range(adata.n_obs)]
    adata.var_names = [f"gene{j}" for j in range(adata.n_vars)]
    return adata


def check_content(adata: ad.AnnData, info: DatasetInfo) -> None:
    """Check a loaded or converted data set against the recorded shape and class counts."""
    n_obs, n_vars = info.shape
    if (n_obs >= 0 and adata.n_obs != n_obs) or adata.n_vars != n_vars:
        raise ValueError(
            f"{info.name}: expected {info.shape} cells x genes, got {adata.shape}; "
            "the file is not the published one"
        )
    for column, n_classes in info.labels.items():
        found = adata.obs[column].nunique() if column in adata.obs else 0
        if found != n_classes:
            raise ValueError(
                f"{info.name}: obs[{column!r}] has {found} classes, expected {n_classes}"
            )


def pbmc68k_reduced_counts() -> ad.AnnData:
    """scanpy's bundled ``pbmc68k_reduced`` (700 cells, 765 genes) with raw counts recovered.

    ``.raw`` holds log-normalised values ``log1p(x / n_counts * 1e4)``; counts are rebuilt as
    ``round(expm1(raw) * n_counts / 1e4)``. Works offline.

    Returns
    -------
    anndata.AnnData
        700 cells x 765 genes: ``X`` and ``layers["counts"]`` the recovered counts (CSR,
        float32), ``layers["lognorm"]`` the bundled log-normalised values (CSR, float32),
        the bundled ``obs`` (labels in ``obs["bulk_labels"]``) and ``obsm["X_umap"]``
        (the bundled UMAP).
    """
    import scanpy as sc

    reduced = sc.datasets.pbmc68k_reduced()
    lognorm = reduced.raw.X
    lognorm = lognorm.toarray() if sparse.issparse(lognorm) else np.asarray(lognorm)
    size = reduced.obs["n_counts"].to_numpy()[:, None]
    counts = np.round(np.expm1(lognorm) * size / 1e4).astype(np.float32)
    adata = ad.AnnData(
        X=sparse.csr_matrix(counts),
        obs=reduced.obs.copy(),
        var=pd.DataFrame(index=reduced.raw.var_names.copy()),
    )
    adata.layers["counts"] = adata.X.copy()
    adata.layers["lognorm"] = sparse.csr_matrix(lognorm.astype(np.float32))
    adata.obsm["X_umap"] = reduced.obsm["X_umap"].copy()
    return adata
