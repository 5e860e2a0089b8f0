"""``sn.tl.image_features`` (SPADE) and ``sn.tl.image_gene_association``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scneural._docs import doc_params
from scneural._utils import get_matrix, read_into_memory, set_seed, to_h5ad_safe, write_results
from scneural._validation import (
    check_adata,
    check_choice,
    check_finite,
    check_key_added,
    check_layer,
    check_optional_int,
    check_positive_int,
    check_unique_var_names,
    is_count_matrix,
)
from scneural.models.image import ImageExpressionModel, ImageFeatureExtractor, build_trunk
from scneural.models.image._backbones import default_input_size
from scneural.models.image._extractor import pick_device, resize_patches

from ._arguments import check_tool_arguments
from ._common import check_backend, saved_model_hint, trainer_kwargs
from ._image_patches import (
    MIN_PATCH_SIZE,
    SpotImage,
    _scale_factor,
    resolve_library,
    spot_image,
)

BACKBONES = ("vgg16", "resnet50", "expression")
EXPRESSION_INPUT_SIZE = 64

_IMAGE_DOC = {
    "library_id": """library_id
        Library of ``adata.uns["spatial"]`` whose image to use; needed when there are several.""",
    "img_key": """img_key
        Image of the library (``"hires"``, ``"lowres"``, ...); ``obsm["spatial"]`` is scaled
        by its ``tissue_{img_key}_scalef``.""",
}


def _log_normalised(adata: AnnData, layer: str | None) -> tuple[Any, bool]:
    """Expression to model: log-normalised as given, or counts normalised + log1p here."""
    import scanpy as sc

    # spots number in the thousands: PCA reads the whole matrix, so read it once here
    matrix = read_into_memory(get_matrix(adata, layer=layer))
    check_finite(matrix, f"adata.layers[{layer!r}]" if layer else "adata.X")
    if not is_count_matrix(matrix):
        return matrix, False
    tmp = AnnData(X=sparse.csr_matrix(matrix, dtype=np.float32))
    sc.pp.normalize_total(tmp, target_sum=1e4)
    sc.pp.log1p(tmp)
    return tmp.X, True


def _expression_targets(
    adata: AnnData, layer: str | None, n_pcs: int, random_state: int
) -> tuple[np.ndarray, bool]:
    """Top PCs of log-normalised expression (scanpy's PCA), scaled so PC1 has unit variance."""
    import scanpy as sc

    matrix, normalised = _log_normalised(adata, layer)
    n_pcs = int(min(n_pcs, adata.n_obs - 1, adata.n_vars - 1))
    tmp = AnnData(X=matrix if sparse.issparse(matrix) else np.asarray(matrix, dtype=np.float32))
    sc.pp.pca(tmp, n_comps=n_pcs, random_state=random_state)
    scores = np.asarray(tmp.obsm["X_pca"], dtype=np.float64)
    scores = scores / max(float(scores[:, 0].std()), 1e-8)
    return scores.astype(np.float32), normalised


def _check_weights(backbone: str, weights: Any) -> tuple[Any, str]:
    """Validate ``weights`` for the backbone; return it (a path ``~``-expanded) and its
    description for ``uns``."""
    if backbone == "expression":
        return weights, "trained"
    if weights is None:
        return None, "random"
    if isinstance(weights, str) and weights == "imagenet":
        return weights, "imagenet"
    if isinstance(weights, str | Path):
        path = Path(weights).expanduser()
        if not path.is_file():
            expanded = f" ({path})" if str(path) != str(weights) else ""
            raise FileNotFoundError(
                f"weights={str(weights)!r} is not a file{expanded}; pass 'imagenet', None "
                f"(random initialisation) or the path of a state dict of torchvision's "
                f"{backbone}"
            )
        return path, str(path)
    raise ValueError(
        f"weights must be 'imagenet', None or a path to a state dict, got {type(weights).__name__}"
    )


def _train_expression_model(
    adata: AnnData,
    spots: SpotImage,
    *,
    layer: str | None,
    input_size: int,
    expression_pcs: int,
    batch_size: int,
    random_state: int,
    train: dict,
    model_kwargs: dict,
) -> tuple[ImageExpressionModel, bool]:
    targets, normalised = _expression_targets(adata, layer, expression_pcs, random_state)
    flat = np.concatenate(
        [
            resize_patches(batch, input_size).permute(0, 2, 3, 1).reshape(len(batch), -1).numpy()
            for batch in spots.iter_batches(batch_size)
        ]
    )
    proxy = AnnData(
        X=targets,
        obs=pd.DataFrame(index=adata.obs_names.copy()),
        var=pd.DataFrame(index=[f"expression_PC{i + 1}" for i in range(targets.shape[1])]),
        obsm={"patches": flat},
    )
    ImageExpressionModel.setup_anndata(proxy, patches_key="patches")
    model = ImageExpressionModel(proxy, **model_kwargs)
    model.train(**train)
    return model, normalised


def _model_patch_size(
    adata: AnnData, model: ImageFeatureExtractor, library_id: str | None, img_key: str
) -> int:
    """The model's patch, covering the same tissue area on this image (its scale factor).

    A rescaled patch under :data:`MIN_PATCH_SIZE` is enlarged to it, with a warning: it
    then covers more tissue than the model's patches did.
    """
    if model.scale_factor is None:
        return model.patch_size
    entry = adata.uns["spatial"][resolve_library(adata, library_id)]
    scale = _scale_factor(entry.get("scalefactors", {}), img_key)
    rescaled = model.patch_size * scale / model.scale_factor
    if round(rescaled) >= MIN_PATCH_SIZE:
        return round(rescaled)
    fix = (
        "use a higher-resolution image (e.g. img_key='hires')"
        if img_key != "hires"
        else "use a higher-resolution image (img_key=)"
    )
    warnings.warn(
        f"on the {img_key!r} image (scale factor {scale:g}) the model's {model.patch_size} px "
        f"patch covers {rescaled:.1f} px, under the {MIN_PATCH_SIZE} px a CNN backbone needs: "
        f"using {MIN_PATCH_SIZE} px, which covers {(MIN_PATCH_SIZE / rescaled) ** 2:.2f}x the "
        f"tissue area of the model's patches; {fix} for patches that match the model's, or "
        f"pass patch_size={MIN_PATCH_SIZE} to accept the larger area",
        UserWarning,
        stacklevel=3,
    )
    return MIN_PATCH_SIZE


@doc_params(**_IMAGE_DOC)
def image_features(
    adata: AnnData,
    *,
    library_id: str | None = None,
    img_key: str = "hires",
    patch_size: int | None = None,
    backbone: Literal["vgg16", "resnet50", "expression"] = "vgg16",
    weights: str | Path | None = "imagenet",
    n_comps: int = 10,
    batch_size: int = 64,
    input_size: int | None = None,
    key_added: str = "image_features",
    backend: Literal["torch"] = "torch",
    layer: str | None = None,
    model: ImageFeatureExtractor | None = None,
    expression_pcs: int = 20,
    spatial_key: str = "spatial",
    n_latent: int = 128,
    random_state: int = 0,
    max_epochs: int | None = None,
    accelerator: str = "auto",
    devices: int | str | Sequence[int] = "auto",
    **train_kwargs: Any,
) -> ImageFeatureExtractor:
    """Deep features of the tissue image at every spot (SPADE, Bae et al. 2021).

    Cuts the image patch centred on each spot, passes it through a CNN and reduces the
    features with PCA. ``backbone="vgg16"`` (SPADE's choice) or ``"resnet50"`` use
    torchvision networks with their own ImageNet preprocessing; ``backbone="expression"``
    trains a compact CNN on this tissue's own patches to predict each spot's log-normalised
    expression PCs (with flips, rotations and colour jitter) and uses its penultimate layer,
    so no pretrained weights are needed. Patches are processed ``batch_size`` at a time
    (training the expression CNN keeps the patches at ``input_size``, ``3 * input_size**2``
    bytes per spot).

    Parameters
    ----------
    {adata}
        Needs ``obsm["spatial"]`` (spot centres in full-resolution pixels) and
        ``uns["spatial"][library_id]`` with ``images`` and ``scalefactors`` (scanpy layout).
        The image is RGB, RGBA or grayscale: uint8, uint16 (divided by 257) or float, taken
        to be in ``[0, 1]`` when all its values are at most 2 (a resize's overshoot above
        1.0 is clipped), else in 0-255.
    {library_id}
    {img_key}
    patch_size
        Side of the square patch in pixels of the chosen image (at least 32). Default: the
        spot diameter (``spot_diameter_fullres`` x scale factor) when that is at least 32
        px, else the spacing of neighbouring spots. With ``model=``: the model's,
        rescaled by this image's scale factor so it covers the same tissue area (raised
        to 32 px, with a warning, when the rescaled patch is smaller).
        Spots near the border are padded with white.
    backbone
        ``"vgg16"``, ``"resnet50"`` or ``"expression"``.
    weights
        For torchvision backbones: ``"imagenet"`` (torchvision's weights API, downloaded
        once and cached under ``$TORCH_HOME``), the path of a local state dict, or ``None``
        for random initialisation (a leading ``~`` of a path is expanded). Ignored for
        ``"expression"``.
    n_comps
        Number of principal components of the (standardised) features; at most the number
        of spots minus one (centring removes a dimension) and the number of features (a
        larger value is lowered, with a warning).
    batch_size
        Patches per minibatch of CNN inference (and of training for ``"expression"``).
    input_size
        Side the patches are resized to before the CNN. Default: 224 (the ImageNet weights'
        size) for torchvision backbones; for ``"expression"`` 64, or the patch size when
        that is smaller (patches are not upsampled).
    {key_added}
    backend
        Only ``"torch"``.
    layer
        For ``"expression"``: read expression from ``adata.layers[layer]`` instead of ``X``
        (raw counts are normalised to 1e4 and log1p-transformed first).
    {model}
        An :class:`~scneural.models.ImageFeatureExtractor`; its backbone, weights, input
        size and PCA are applied as they are. The arguments that only build a new one
        (``backbone``, ``weights``, ``n_comps``, ``input_size``, ``layer``,
        ``expression_pcs``, ``n_latent``, ``max_epochs`` and training arguments) must then
        stay at their defaults.
    expression_pcs
        For ``"expression"``: number of expression PCs the CNN learns to predict.
    spatial_key
        Key of ``adata.obsm`` with the spot coordinates.
    n_latent
        For ``"expression"``: channels of the last convolutional block; each gives an
        average- and a max-pooled feature, so there are ``2 * n_latent`` features.
    {random_state}
    {max_epochs}
        For ``"expression"``; default 60, with early stopping on the validation loss.
    {accelerator}
    {devices}
    {train_kwargs}
        Only with ``backbone="expression"`` (a torchvision backbone is not trained).

    Returns
    -------
    The :class:`~scneural.models.ImageFeatureExtractor` (backbone and fitted PCA). Writes:

    ``obsm[f"X_{{key_added}}"]``
        CNN features of each spot's patch (float32, spots x features).
    ``obsm[f"X_{{key_added}}_pca"]``
        Their principal components (spots x ``n_comps``).
    ``uns[key_added]``
        ``params`` (backbone, weights, library, image, patch and input sizes, seed, ...;
        ``training``: every argument the expression CNN was trained with, defaults
        included, empty otherwise),
        ``variance``, ``variance_ratio`` (of the PCs) and ``history`` (per-epoch losses of
        the expression CNN, also when reused; empty for a torchvision backbone).

    Warns
    -----
    UserWarning
        If the image is uint16 with a maximum of at most 16383 (12- or 14-bit data), which
        looks nearly black once divided by 257: rescale it to uint8 or to floats in
        ``[0, 1]`` first.
    UserWarning
        With ``model=`` and no ``patch_size``, if the model's patch rescaled to this image
        is under 32 px: 32 px patches are used, which cover more tissue than the model's.
    UserWarning
        If ``n_comps`` is more than ``min(n_spots - 1, n_features)``; that many PCs are
        computed.

    Examples
    --------
    >>> m = sn.tl.image_features(section1, backbone="expression")
    >>> sn.tl.image_features(section2, model=m)
    >>> sn.tl.image_gene_association(section1)
    >>> sn.pl.image_features(section1, pcs=(1, 2))
    """
    check_adata(adata)
    check_backend(backend, "image_features", available=("torch",))
    if model is not None and not isinstance(model, ImageFeatureExtractor):
        raise TypeError(
            f"model= must be an ImageFeatureExtractor returned by image_features, got "
            f"{type(model).__name__}" + saved_model_hint(model, "ImageFeatureExtractor")
        )
    if model is not None and model.pca is None:
        raise ValueError("model= has no fitted PCA; pass an extractor returned by image_features")
    if model is None and train_kwargs and backbone != "expression":
        raise TypeError(
            f"image_features got unexpected arguments {sorted(train_kwargs)}; extra "
            "arguments go to the expression CNN's training (backbone='expression') only"
        )
    check_tool_arguments(
        image_features,
        model,
        ImageExpressionModel,
        train_kwargs,
        backbone=backbone,
        weights=weights,
        n_comps=n_comps,
        input_size=input_size,
        layer=layer,
        expression_pcs=expression_pcs,
        n_latent=n_latent,
        max_epochs=max_epochs,
    )
    if model is None:
        check_choice(backbone, "backbone", BACKBONES)
        weights, weights_desc = _check_weights(backbone, weights)
        n_comps = check_positive_int(n_comps, "n_comps")
        if backbone == "expression":
            check_layer(adata, layer)
            expression_pcs = check_positive_int(expression_pcs, "expression_pcs")
            n_latent = check_positive_int(n_latent, "n_latent")
            max_epochs = check_optional_int(max_epochs, "max_epochs")
            if adata.n_obs < 10:
                raise ValueError(
                    f"backbone='expression' trains on the spots' patches; {adata.n_obs} spots "
                    "are too few (need at least 10): use a torchvision backbone"
                )
    else:
        backbone, weights_desc = model.backbone, model.weights
        if patch_size is None:
            patch_size = _model_patch_size(adata, model, library_id, img_key)
    check_key_added(key_added)
    pick_device(accelerator)  # a misspelt or absent accelerator fails now, not after training
    batch_size = check_positive_int(batch_size, "batch_size")
    input_size = check_optional_int(input_size, "input_size", minimum=32)
    spots = spot_image(
        adata,
        library_id=library_id,
        img_key=img_key,
        patch_size=patch_size,
        spatial_key=spatial_key,
    )
    set_seed(random_state)

    history: dict[str, Any] = {}
    normalised = None
    if model is None:
        if backbone == "expression":
            size = input_size or max(32, min(EXPRESSION_INPUT_SIZE, spots.patch_size))
            expression_model, normalised = _train_expression_model(
                adata,
                spots,
                layer=layer,
                input_size=size,
                expression_pcs=expression_pcs,
                batch_size=batch_size,
                random_state=random_state,
                train=trainer_kwargs(
                    accelerator=accelerator,
                    devices=devices,
                    max_epochs=max_epochs,
                    train_kwargs={"batch_size": batch_size, **train_kwargs},
                ),
                model_kwargs={"n_latent": check_positive_int(n_latent, "n_latent")},
            )
            extractor = ImageFeatureExtractor(
                backbone,
                weights=weights_desc,
                input_size=size,
                patch_size=spots.patch_size,
                expression_model=expression_model,
                info={"expression_pcs": expression_pcs, "layer": layer},
                scale_factor=spots.scale_factor,
            )
            history = expression_model.history_dict()
        else:
            trunk = build_trunk(backbone, weights)
            extractor = ImageFeatureExtractor(
                backbone,
                weights=weights_desc,
                input_size=input_size or default_input_size(backbone),
                patch_size=spots.patch_size,
                trunk=trunk,
                scale_factor=spots.scale_factor,
            )
        features = extractor.features(spots, batch_size=batch_size, accelerator=accelerator)
        if not np.all(np.isfinite(features)):
            raise ValueError("the backbone produced non-finite features; check weights=")
        pcs = extractor.fit_pca(features, n_comps, random_state=random_state)
        reused = False
    else:
        extractor = model
        features = extractor.features(spots, batch_size=batch_size, accelerator=accelerator)
        pcs = extractor.transform(features)
        if extractor.expression_model is not None:  # how the reused CNN was trained
            history = extractor.expression_model.history_dict()
        reused = True

    uns = {
        "params": {
            "backbone": extractor.backbone,
            "weights": extractor.weights,
            "library_id": spots.library_id,
            "img_key": spots.img_key,
            "scale_factor": spots.scale_factor,
            "spatial_key": spatial_key,
            "patch_size": spots.patch_size,
            "input_size": extractor.input_size,
            "n_features": extractor.n_features,
            "n_comps": extractor.n_comps,
            "batch_size": batch_size,
            "random_state": random_state,
            "max_epochs": max_epochs,
            "backend": backend,
            "model_reused": reused,
            "expression": {
                **extractor.info,
                "normalised_here": normalised,
            },
            "train_kwargs": {k: str(v) for k, v in train_kwargs.items()},
            "training": extractor.expression_model.training_record()
            if extractor.expression_model is not None
            else {},
        },
        "variance": extractor.pca.explained_variance_.astype(np.float64),
        "variance_ratio": extractor.pca.explained_variance_ratio_.astype(np.float64),
        "history": history,
    }
    write_results(
        adata,
        obsm={f"X_{key_added}": features, f"X_{key_added}_pca": pcs},
        uns={key_added: to_h5ad_safe(uns)},
    )
    return extractor


def image_gene_association(
    adata: AnnData,
    *,
    key: str = "image_features",
    n_pcs: int | None = None,
    layer: str | None = None,
    genes: Sequence[str] | None = None,
    gene_symbols: str | None = None,
    chunk_size: int = 1000,
) -> pd.DataFrame:
    """Genes whose expression follows each image PC (SPADE's linear-model test).

    For every gene and image PC, a linear model ``expression ~ a + b * PC`` is fitted over
    the spots; its slope ``b``, the two-sided p-value of ``b`` (scipy's Pearson test, the
    same t-test as ordinary least squares) and the Benjamini-Hochberg q-value over all
    gene x PC tests (statsmodels' ``multipletests``) are reported. Genes are read a block
    of ``chunk_size`` at a time, so a sparse matrix is never densified whole.

    Parameters
    ----------
    adata
        AnnData with ``obsm[f"X_{key}_pca"]`` from :func:`image_features`.
    key
        The ``key_added`` of :func:`image_features`.
    n_pcs
        Test the first ``n_pcs`` image PCs (default all).
    layer
        Expression from ``adata.layers[layer]`` instead of ``X``. Raw counts are normalised
        to 1e4 and log1p-transformed first.
    genes
        Test only these genes (default all).
    gene_symbols
        Column of ``adata.var`` with readable gene names, added as column ``symbol``.
    chunk_size
        Genes per block.

    Returns
    -------
    The associations, a tidy DataFrame with columns ``gene``, ``pc`` (1-based), ``coef``
    (slope), ``intercept``, ``r`` (Pearson correlation), ``pvalue`` and ``qvalue``, sorted
    by PC and p-value (and ``symbol`` with ``gene_symbols``); also written to
    ``uns[key]["associations"]``, with this call's settings (``n_pcs``, ``layer``, whether
    the counts were normalised here, the test) in ``uns[key]["params"]["association"]``.
    Genes and PCs constant over the spots are left out (a constant PC with a warning).
    """
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    check_adata(adata)
    pca_key = f"X_{key}_pca"
    if pca_key not in adata.obsm or key not in adata.uns:
        raise KeyError(
            f"adata.obsm[{pca_key!r}] or adata.uns[{key!r}] is missing; run "
            f"sn.tl.image_features(adata, key_added={key!r}) first"
        )
    check_layer(adata, layer)
    check_unique_var_names(adata)  # the results are indexed by gene
    if gene_symbols is not None and gene_symbols not in adata.var.columns:
        raise KeyError(
            f"gene_symbols={gene_symbols!r} is not a column of adata.var: {list(adata.var.columns)}"
        )
    pcs = np.asarray(adata.obsm[pca_key], dtype=np.float64)
    if n_pcs is None:
        n_pcs = pcs.shape[1]
    n_pcs = check_positive_int(n_pcs, "n_pcs")
    if n_pcs > pcs.shape[1]:
        raise ValueError(f"n_pcs={n_pcs} but obsm[{pca_key!r}] has only {pcs.shape[1]} PCs")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    if adata.n_obs < 3:
        raise ValueError(f"the association test needs at least 3 spots, adata has {adata.n_obs}")
    gene_index = np.arange(adata.n_vars)
    if genes is not None:
        genes = [genes] if isinstance(genes, str) else list(genes)  # one name: not its letters
        missing = [g for g in genes if g not in adata.var_names]
        if missing:
            raise KeyError(f"genes {missing[:5]} are not in adata.var_names")
        gene_index = adata.var_names.get_indexer(list(genes))
    matrix, normalised = _log_normalised(adata, layer)
    pcs = pcs[:, :n_pcs]
    # constant up to float32 rounding: identical patches projected on the PCs can differ
    # in the last bits (std about 1e-8 of the values on some CPUs), which is no signal
    varying_pcs = np.flatnonzero(pcs.std(axis=0) > 1e-6 * np.abs(pcs).max(axis=0))
    if varying_pcs.size == 0:
        raise ValueError(
            f"the image PCs in obsm[{pca_key!r}] are constant over the spots (the image "
            "patches do not differ here); there is nothing to associate genes with"
        )
    if varying_pcs.size < n_pcs:
        constant = sorted(set(range(1, n_pcs + 1)) - set(varying_pcs + 1))
        warnings.warn(
            f"image PCs {constant} are constant over the spots; they are left out (their "
            "correlation with any gene is undefined)",
            UserWarning,
            stacklevel=2,
        )
    frames = []
    for start in range(0, gene_index.size, chunk_size):
        idx = gene_index[start : start + chunk_size]
        block = matrix[:, idx]
        block = block.toarray() if sparse.issparse(block) else np.asarray(block)
        block = block.astype(np.float64)
        varying = block.std(axis=0) > 0
        block, idx = block[:, varying], idx[varying]
        if idx.size == 0:
            continue
        for j in varying_pcs:
            x = pcs[:, j]
            result = stats.pearsonr(x[:, None], block, axis=0)
            r = np.asarray(result.statistic)
            slope = r * block.std(axis=0) / x.std()
            frames.append(
                pd.DataFrame(
                    {
                        "gene": adata.var_names[idx].to_numpy(),
                        "pc": j + 1,
                        "coef": slope,
                        "intercept": block.mean(axis=0) - slope * x.mean(),
                        "r": r,
                        "pvalue": np.asarray(result.pvalue),
                    }
                )
            )
    if not frames:
        raise ValueError("no gene varies over the spots; nothing to test")
    table = pd.concat(frames, ignore_index=True)
    table["qvalue"] = multipletests(table["pvalue"].to_numpy(), method="fdr_bh")[1]
    table = table.sort_values(["pc", "pvalue"], kind="stable").reset_index(drop=True)
    table["gene"] = table["gene"].astype(str)
    if gene_symbols is not None:
        table["symbol"] = adata.var[gene_symbols].astype(str).reindex(table["gene"]).to_numpy()
    entry = dict(adata.uns[key])
    entry["associations"] = table
    params = dict(entry.get("params", {}))
    params["association"] = to_h5ad_safe(
        {"n_pcs": n_pcs, "layer": layer, "normalised_here": normalised, "test": "pearson/OLS"}
    )
    entry["params"] = params
    write_results(adata, uns={key: entry})
    return table
