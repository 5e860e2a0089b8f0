"""Tests of sn.tl.image_features (SPADE), image_gene_association and their plots."""

from __future__ import annotations

import urllib.error
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData

import scneural as sn
from conftest import (
    DATA_DIR,
    FAST_EXPRESSION_BACKBONE,
    SCALE,
    SPACING,
    assert_unchanged,
    load_real,
    snapshot,
    synthetic_section,
)
from scneural.models.image import TorchvisionTrunk
from scneural.models.image._extractor import to_rgb_uint8
from scneural.tl._image_patches import PAD_VALUE, spot_image


@pytest.fixture
def section() -> AnnData:
    return synthetic_section()


def _fast(**kwargs):
    """Small random-init VGG16 settings that run in seconds on a CPU."""
    return {"weights": None, "input_size": 32, "n_comps": 5, **kwargs}


# --- patches -------------------------------------------------------------------------


def test_patch_equals_image_slice(section):
    spots = spot_image(section)
    image = section.uns["spatial"]["lib"]["images"]["hires"]
    assert spots.patch_size == SPACING  # spot diameter x scale factor
    i = 7  # interior spot
    x0, y0 = spots.corners()[i]
    cx, cy = section.obsm["spatial"][i] * SCALE
    assert (x0, y0) == (cx - SPACING // 2, cy - SPACING // 2)
    np.testing.assert_array_equal(spots.patch(i), image[y0 : y0 + SPACING, x0 : x0 + SPACING])
    # the border spot is padded, not dropped; its inner part is the image slice
    last = section.n_obs - 1
    x0, y0 = spots.corners()[last]
    patch = spots.patch(last)
    assert patch.shape == (SPACING, SPACING, 3) and x0 < 0
    assert np.all(patch[:, :-x0] == PAD_VALUE)
    np.testing.assert_array_equal(patch[: 240 - y0, -x0:], image[y0:, : x0 + SPACING])
    batches = list(spots.iter_batches(16))
    assert [len(b) for b in batches] == [16, 16, 16, 1]
    np.testing.assert_array_equal(np.concatenate(batches)[i], spots.patch(i))


def test_spatial_coordinates_as_a_data_frame(section):
    """A DataFrame in obsm: x and y are its first two columns, whatever follows."""
    expected = spot_image(section).corners()
    xy = section.obsm["spatial"]
    section.obsm["spatial"] = pd.DataFrame(
        {"x": xy[:, 0], "y": xy[:, 1], "note": "spot"}, index=section.obs_names
    )
    np.testing.assert_array_equal(spot_image(section).corners(), expected)


def test_patch_size_from_neighbour_spacing(section):
    del section.uns["spatial"]["lib"]["scalefactors"]["spot_diameter_fullres"]
    assert spot_image(section).patch_size == SPACING
    assert spot_image(section, patch_size=48).patch_size == 48


@pytest.mark.parametrize(
    ("image", "expected_max"),
    [
        (np.full((8, 8), 100, dtype=np.uint8), 100),
        (np.full((8, 8, 1), 100, dtype=np.uint8), 100),
        (np.full((8, 8, 4), 100, dtype=np.uint8), 100),
        (np.full((8, 8, 3), 65535, dtype=np.uint16), 255),
        (np.full((8, 8, 3), 0.5, dtype=np.float32), 128),
    ],
)
def test_image_conversion(image, expected_max):
    rgb = to_rgb_uint8(image)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert rgb.max() == expected_max


def test_float_image_in_unit_range_with_resize_overshoot():
    """A bicubic resize (squidpy, skimage) leaves a [0, 1] image slightly above 1.0 or
    under 0: it is still a [0, 1] image, clipped, not 0-255 data turned black."""
    base = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    image = base / 255.0
    image[0, 0, 0], image[1, 1, 1] = 1.02, -0.01
    expected = base.copy()
    expected[0, 0, 0], expected[1, 1, 1] = 255, 0
    np.testing.assert_array_equal(to_rgb_uint8(image), expected)
    # 0-255 floats are still recognised, and float_max= overrides the guess
    np.testing.assert_array_equal(to_rgb_uint8(base.astype(np.float32)), base)
    dark = np.full((4, 4, 3), 1.5, dtype=np.float32)  # values of a dark 0-255 area
    assert to_rgb_uint8(dark).max() == 255
    assert to_rgb_uint8(dark, float_max=255.0).max() == 2
    with pytest.raises(ValueError, match="float_max must be a positive number"):
        to_rgb_uint8(dark, float_max=0)


def test_float_section_with_overshoot_gives_the_uint8_features(section):
    twin = section.copy()
    image = section.uns["spatial"]["lib"]["images"]["hires"] / 255.0
    image[0, 0, 0] = 1.02
    twin.uns["spatial"]["lib"]["images"]["hires"] = image
    section.uns["spatial"]["lib"]["images"]["hires"][0, 0, 0] = 255
    sn.tl.image_features(section, **_fast(n_comps=3))
    sn.tl.image_features(twin, **_fast(n_comps=3))
    np.testing.assert_allclose(
        twin.obsm["X_image_features"], section.obsm["X_image_features"], rtol=1e-4, atol=1e-4
    )


def test_dim_uint16_image_warns():
    """12-bit data in uint16 is divided by 257 like 16-bit data (documented), which leaves
    it nearly black: said, with what to do."""
    base = np.random.default_rng(0).integers(0, 4096, (8, 8, 3)).astype(np.uint16)
    base[0, 0, 0] = 4095
    with pytest.warns(UserWarning, match=r"maximum 4095.*rescale it to uint8"):
        assert to_rgb_uint8(base).max() == 16
    full = (base * 16).astype(np.uint16)
    full[0, 0, 0] = 65535
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert to_rgb_uint8(full).max() == 255


def test_rgba_and_grayscale_sections_run(section):
    image = section.uns["spatial"]["lib"]["images"]["hires"]
    gray = (image.mean(axis=2) * 257).astype(np.uint16)  # 16-bit grayscale
    section.uns["spatial"]["lib"]["images"]["hires"] = gray
    sn.tl.image_features(section, **_fast(n_comps=3))
    assert section.obsm["X_image_features"].shape == (section.n_obs, 512)


# --- features ------------------------------------------------------------------------


def test_vgg16_features_separate_regions(section):
    extractor = sn.tl.image_features(section, **_fast())
    features = section.obsm["X_image_features"]
    pcs = section.obsm["X_image_features_pca"]
    assert features.shape == (section.n_obs, 512) and features.dtype == np.float32
    assert pcs.shape == (section.n_obs, 5)
    uns = section.uns["image_features"]
    assert uns["params"]["backbone"] == "vgg16" and uns["params"]["weights"] == "random"
    assert uns["params"]["training"] == {}  # a pretrained backbone is not trained here
    assert uns["params"]["patch_size"] == SPACING and uns["params"]["input_size"] == 32
    assert np.all(np.diff(uns["variance_ratio"]) <= 0)
    region = section.obs["region"].astype(int).to_numpy()
    assert abs(np.corrcoef(pcs[:, 0], region)[0, 1]) > 0.9
    assert extractor.n_comps == 5
    # determinism with a seed
    again = section.copy()
    sn.tl.image_features(again, **_fast())
    np.testing.assert_allclose(again.obsm["X_image_features"], features, rtol=1e-5, atol=1e-6)


def test_resnet50_shapes(section):
    sn.tl.image_features(section, backbone="resnet50", **_fast(n_comps=3), key_added="res")
    assert section.obsm["X_res"].shape == (section.n_obs, 2048)
    assert section.obsm["X_res_pca"].shape == (section.n_obs, 3)


def test_model_reuse_and_save_load(section, tmp_path):
    extractor = sn.tl.image_features(section, **_fast())
    other = section.copy()
    del other.obsm["X_image_features"], other.uns["image_features"]
    sn.tl.image_features(other, model=extractor)
    np.testing.assert_allclose(
        other.obsm["X_image_features_pca"],
        section.obsm["X_image_features_pca"],
        rtol=1e-4,
        atol=1e-4,
    )
    assert other.uns["image_features"]["params"]["model_reused"]
    extractor.save(tmp_path / "ext")
    loaded = sn.models.ImageFeatureExtractor.load(tmp_path / "ext")
    sn.tl.image_features(other, model=loaded, key_added="loaded")
    np.testing.assert_allclose(
        other.obsm["X_loaded_pca"], section.obsm["X_image_features_pca"], rtol=1e-4, atol=1e-4
    )
    assert dict(other.uns["loaded"]["history"]) == {}  # a torchvision backbone trains nothing
    with pytest.raises(ValueError, match="not empty"):
        extractor.save(tmp_path / "ext")


@pytest.mark.parametrize(
    "arguments",
    [
        {"backbone": "resnet50"},
        {"weights": None},
        {"n_comps": 3},
        {"input_size": 64},
        {"layer": "counts"},
        {"expression_pcs": 5},
        {"n_latent": 16},
        {"max_epochs": 5},
        {"lr": 0.1},
    ],
)
def test_reuse_refuses_arguments_that_build_a_new_extractor(section, arguments):
    """As the other tools: with model= they had no effect (input_size= only warned), yet a
    user could believe them applied."""
    extractor = sn.tl.image_features(section.copy(), **_fast())
    before = snapshot(section)
    name = next(iter(arguments))
    with pytest.raises(ValueError, match=f"applies a trained model as it is: {name}="):
        sn.tl.image_features(section, model=extractor, **arguments)
    assert_unchanged(section, before)
    # display-only trainer options and inference's batch size are fine
    sn.tl.image_features(section, model=extractor, batch_size=8, enable_progress_bar=False)
    assert section.uns["image_features"]["params"]["model_reused"]


def test_saving_an_unfitted_extractor_over_a_fitted_one_drops_its_pca(section, tmp_path):
    """save(overwrite=True) kept the folder's earlier pca.npz, and load gave the unfitted
    extractor that PCA: image_features(model=) then used it without a word."""
    fitted = sn.tl.image_features(section, **_fast())
    fitted.save(tmp_path / "ext")
    unfitted = sn.models.ImageFeatureExtractor(
        "vgg16", weights="random", input_size=32, patch_size=fitted.patch_size, trunk=fitted.trunk
    )
    unfitted.save(tmp_path / "ext", overwrite=True)
    loaded = sn.models.ImageFeatureExtractor.load(tmp_path / "ext")
    assert loaded.pca is None
    with pytest.raises(ValueError, match="no fitted PCA"):
        sn.tl.image_features(section.copy(), model=loaded)


def _downscaled(section: AnnData, factor: int = 2) -> AnnData:
    """The same tissue with its image stored at 1/factor of the resolution."""
    other = section.copy()
    entry = other.uns["spatial"]["lib"]
    image = entry["images"]["hires"]
    height, width = image.shape[0] // factor, image.shape[1] // factor
    entry["images"]["hires"] = (
        image[: height * factor, : width * factor]
        .reshape(height, factor, width, factor, 3)
        .mean(axis=(1, 3))
        .astype(np.uint8)
    )
    entry["scalefactors"]["tissue_hires_scalef"] = SCALE / factor
    return other


def test_model_reuse_covers_the_same_tissue_on_another_scale(section, tmp_path):
    """SPADE's transfer: another section's image has its own scale factor, so the model's
    patch (in pixels of its own image) is rescaled to cover the same tissue area."""
    extractor = sn.tl.image_features(section, **_fast(), patch_size=64)
    half = _downscaled(section)
    sn.tl.image_features(half, model=extractor)
    assert half.uns["image_features"]["params"]["patch_size"] == 32
    extractor.save(tmp_path / "ext")  # the scale travels with the model
    loaded = sn.models.ImageFeatureExtractor.load(tmp_path / "ext")
    assert loaded.scale_factor == extractor.scale_factor == SCALE
    again = _downscaled(section)
    sn.tl.image_features(again, model=loaded)
    np.testing.assert_allclose(
        again.obsm["X_image_features"], half.obsm["X_image_features"], rtol=1e-4, atol=1e-4
    )


def test_model_reuse_warns_when_the_rescaled_patch_is_under_32_px(section):
    """The model's 40 px patch is 20 px on an image of half the resolution: 32 px are
    used, covering 2.56x the tissue, and the user is told."""
    extractor = sn.tl.image_features(section, **_fast(), patch_size=40)
    half = _downscaled(section)
    with pytest.warns(UserWarning, match=r"covers 20\.0 px.*using 32 px.*2\.56x.*img_key="):
        sn.tl.image_features(half, model=extractor)
    assert half.uns["image_features"]["params"]["patch_size"] == 32
    with warnings.catch_warnings():  # an explicit patch_size= is the user's choice
        warnings.simplefilter("error")
        sn.tl.image_features(half, model=extractor, patch_size=32)


def test_spots_of_another_library_are_refused(section):
    """After sc.concat(..., label="library_id"), every spot is not on every image."""
    both = section.copy()
    both.uns["spatial"]["other"] = both.uns["spatial"]["lib"]
    both.obs["library_id"] = pd.Categorical(["lib", "other"] * (both.n_obs // 2) + ["lib"])
    before = snapshot(both)
    with pytest.raises(ValueError, match=r"spots belong to other libraries than 'lib'"):
        sn.tl.image_features(both, library_id="lib", **_fast())
    assert_unchanged(both, before)
    one = both[both.obs["library_id"] == "lib"].copy()
    sn.tl.image_features(one, library_id="lib", **_fast())
    assert one.obsm["X_image_features"].shape[0] == one.n_obs


def test_float_patches_give_the_features_of_their_uint8_twins(section):
    extractor = sn.tl.image_features(section, **{**_fast(), **FAST_EXPRESSION_BACKBONE})
    patches = spot_image(section).patches(np.arange(6))
    np.testing.assert_allclose(
        extractor.features_of(patches.astype(np.float32) / 255.0),
        extractor.features_of(patches),
        rtol=1e-3,
        atol=1e-3,
    )
    # a minibatch of a 0-255 float image's patches that happen to be dark (all values
    # under 2) is scaled as the whole image says with float_max=, not guessed per batch
    dark = patches // 128
    np.testing.assert_allclose(
        extractor.features_of(dark.astype(np.float32), float_max=255.0),
        extractor.features_of(dark),
        rtol=1e-3,
        atol=1e-3,
    )


def test_weights_from_state_dict(section, tmp_path):
    torch.manual_seed(3)
    trunk = TorchvisionTrunk("vgg16")
    # torchvision's own naming, as torch.save(torchvision.models.vgg16().state_dict())
    state = {"features." + k.removeprefix("body."): v for k, v in trunk.state_dict().items()}
    torch.save(state, tmp_path / "vgg16.pth")
    sn.tl.image_features(section, weights=str(tmp_path / "vgg16.pth"), input_size=32, n_comps=3)
    assert section.uns["image_features"]["params"]["weights"] == str(tmp_path / "vgg16.pth")
    spots = spot_image(section)
    from scneural.models.image._backbones import preprocessing
    from scneural.models.image._extractor import resize_patches

    with torch.inference_mode():
        expected = trunk.eval()(
            preprocessing("vgg16", 32)(resize_patches(spots.patches([0, 1]), 32))
        )
    np.testing.assert_allclose(
        section.obsm["X_image_features"][:2], expected.numpy(), rtol=1e-4, atol=1e-5
    )
    # a state dict of another network is refused, adata unchanged
    before = snapshot(section)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not fit"):
        sn.tl.image_features(section, weights=str(tmp_path / "bad.pth"), input_size=32)
    assert_unchanged(section, before)
    # the right names with another shape (a sibling architecture): the same clear error
    first = next(iter(state))
    state[first] = state[first][:1]
    torch.save(state, tmp_path / "sibling.pth")
    with pytest.raises(ValueError, match=r"do not fit.*1 of another shape"):
        sn.tl.image_features(section, weights=str(tmp_path / "sibling.pth"), input_size=32)
    assert_unchanged(section, before)


def test_weights_path_with_tilde(section, tmp_path, monkeypatch):
    """weights='~/...' is the user's home, as in a shell (and as SCNEURAL_DATA_DIR)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    torch.save(TorchvisionTrunk("vgg16").state_dict(), tmp_path / "trunk.pth")
    sn.tl.image_features(section, **_fast(weights="~/trunk.pth", n_comps=3))
    assert section.uns["image_features"]["params"]["weights"] == str(tmp_path / "trunk.pth")
    before = snapshot(section)
    with pytest.raises(FileNotFoundError, match=r"'~/missing\.pth' is not a file \(/"):
        sn.tl.image_features(section, **_fast(weights="~/missing.pth"))
    assert_unchanged(section, before)


def test_imagenet_weights_from_torch_home_cache(section, tmp_path, monkeypatch):
    """weights="imagenet" reads torchvision's cache ($TORCH_HOME/hub/checkpoints) offline."""
    torch.manual_seed(5)
    trunk = TorchvisionTrunk("vgg16")
    state = {"features." + k.removeprefix("body."): v for k, v in trunk.state_dict().items()}
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / "vgg16-397923af.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    extractor = sn.tl.image_features(section, weights="imagenet", input_size=32, n_comps=3)
    assert section.uns["image_features"]["params"]["weights"] == "imagenet"
    for name, value in trunk.state_dict().items():
        torch.testing.assert_close(extractor.trunk.state_dict()[name], value)


def test_imagenet_offline_error(section, tmp_path, monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    before = snapshot(section)
    with pytest.raises(RuntimeError, match="TORCH_HOME") as err:
        sn.tl.image_features(section, weights="imagenet", input_size=32)
    assert "vgg16-397923af.pth" in str(err.value) and "weights=" in str(err.value)
    assert_unchanged(section, before)


def test_expression_backbone(section, tmp_path):
    kwargs = {**FAST_EXPRESSION_BACKBONE, "max_epochs": 3}
    model = sn.tl.image_features(section, **kwargs)
    twin = section.copy()
    sn.tl.image_features(twin, **kwargs)  # same seed, same features
    np.testing.assert_allclose(
        twin.obsm["X_image_features"], section.obsm["X_image_features"], rtol=1e-5, atol=1e-6
    )
    assert section.obsm["X_image_features"].shape == (section.n_obs, 32)  # avg + max pool
    assert section.obsm["X_image_features_pca"].shape == (section.n_obs, 4)
    uns = section.uns["image_features"]
    assert len(uns["history"]["train_loss"]) == 3
    assert uns["params"]["expression"]["normalised_here"]  # counts were log-normalised
    training = uns["params"]["training"]["train"]
    assert training["max_epochs"] == 3 and training["weight_decay"] == 1e-4  # a default
    assert model.expression_model.is_trained
    other = section.copy()
    sn.tl.image_features(other, model=model, key_added="again")
    np.testing.assert_allclose(
        other.obsm["X_again"], section.obsm["X_image_features"], rtol=1e-4, atol=1e-5
    )
    model.save(tmp_path / "expr")
    loaded = sn.models.ImageFeatureExtractor.load(tmp_path / "expr")
    sn.tl.image_features(other, model=loaded, key_added="loaded")
    np.testing.assert_allclose(
        other.obsm["X_loaded_pca"], section.obsm["X_image_features_pca"], rtol=1e-4, atol=1e-4
    )
    # reused, fresh or loaded: the history says how the CNN was trained, as params do
    for key in ("again", "loaded"):
        assert list(other.uns[key]["history"]["train_loss"]) == list(uns["history"]["train_loss"])


def test_augmentations_keep_range_and_shape():
    from scneural.models.image import augment_patches

    x = torch.rand(6, 3, 32, 32)
    y = augment_patches(x, jitter=0.3, shift=0.125)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert not torch.allclose(x, y)


# --- association ---------------------------------------------------------------------


def test_association_recovers_planted_gene(section):
    sn.tl.image_features(section, **_fast())
    table = sn.tl.image_gene_association(section, n_pcs=3)
    assert list(table.columns) == ["gene", "pc", "coef", "intercept", "r", "pvalue", "qvalue"]
    assert set(table["pc"]) == {1, 2, 3}
    pc1 = table[table["pc"] == 1]
    assert pc1.iloc[0]["gene"] == "marker"
    assert pc1.iloc[0]["qvalue"] < 1e-6
    # null genes: few significant at q < 0.05 (BH controls the FDR)
    null = pc1[pc1["gene"] != "marker"]
    assert (null["qvalue"] < 0.05).mean() < 0.2
    stored = section.uns["image_features"]["associations"]
    pd.testing.assert_frame_equal(stored, table)
    section.var["symbol"] = [f"S{i}" for i in range(section.n_vars)]
    named = sn.tl.image_gene_association(section, n_pcs=1, gene_symbols="symbol")
    assert named.iloc[0]["symbol"] == "S0" and named.iloc[0]["gene"] == "marker"
    # the slope and p-value agree with statsmodels' OLS
    import statsmodels.api as smapi

    from scneural.tl._image_features import _log_normalised

    expression = _log_normalised(section, None)[0][:, 0].toarray().ravel()
    fit = smapi.OLS(
        expression, smapi.add_constant(section.obsm["X_image_features_pca"][:, 0])
    ).fit()
    row = pc1.iloc[0]
    np.testing.assert_allclose(row["coef"], fit.params[1], rtol=1e-4)
    np.testing.assert_allclose(row["pvalue"], fit.pvalues[1], rtol=1e-3)


def test_association_bad_input(section):
    before = snapshot(section)
    with pytest.raises(KeyError, match="image_features"):
        sn.tl.image_gene_association(section)
    assert_unchanged(section, before)
    sn.tl.image_features(section, **_fast())
    before = snapshot(section)
    with pytest.raises(ValueError, match="n_pcs"):
        sn.tl.image_gene_association(section, n_pcs=50)
    with pytest.raises(KeyError, match="genes"):
        sn.tl.image_gene_association(section, genes=["nope"])
    with pytest.raises(KeyError, match="gene_symbols"):
        sn.tl.image_gene_association(section, gene_symbols="nope")
    assert_unchanged(section, before)
    assert "associations" not in section.uns["image_features"]
    twin = section.copy()
    twin.var_names = ["g"] * twin.n_vars
    before = snapshot(twin)
    with pytest.raises(ValueError, match="var_names are not unique"):
        sn.tl.image_gene_association(twin)
    assert_unchanged(twin, before)


# --- bad input -----------------------------------------------------------------------


def _no_spatial(a):
    del a.uns["spatial"]


def _two_libraries(a):
    a.uns["spatial"]["lib2"] = a.uns["spatial"]["lib"]


def _outside(a):
    a.obsm["spatial"][0] = [5000.0, 5000.0]


def _text_coordinates(a):
    a.obsm["spatial"] = pd.DataFrame({"barcode": "AAC", "x": 1.0}, index=a.obs_names)


def _two_channels(a):
    a.uns["spatial"]["lib"]["images"]["hires"] = np.zeros((240, 320, 2), dtype=np.uint8)


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "match"),
    [
        (_no_spatial, {}, KeyError, "uns\\['spatial'\\]"),
        (_two_libraries, {}, ValueError, "library_id"),
        (None, {"library_id": "nope"}, KeyError, "library_id"),
        (None, {"img_key": "lowres"}, KeyError, "img_key"),
        (_outside, {}, ValueError, "outside"),
        (_text_coordinates, {}, ValueError, "must hold numbers"),
        (None, {"patch_size": 16}, ValueError, "patch_size=16"),
        (_two_channels, {}, ValueError, "3 channels"),
        (None, {"backbone": "alexnet"}, ValueError, "backbone"),
        (None, {"weights": "/no/such/file.pth"}, FileNotFoundError, "weights"),
        (None, {"n_comps": 0}, ValueError, "n_comps"),
        (None, {"batch_size": 0}, ValueError, "batch_size"),
        (None, {"model": "vgg"}, TypeError, "model="),
        (None, {"backend": "jax"}, ValueError, "backend"),
        (None, {"n_pcs": 3}, TypeError, "unexpected arguments \\['n_pcs'\\]"),
        (None, {"accelerator": "cdua"}, ValueError, "accelerator='cdua' is not one of"),
        (None, {"key_added": "a/b"}, ValueError, "key_added must be"),
    ],
)
def test_bad_input_leaves_adata_unchanged(section, change, kwargs, error, match):
    if change is not None:
        change(section)
    before = snapshot(section)
    with pytest.raises(error, match=match):
        sn.tl.image_features(section, **{**_fast(), **kwargs})
    assert_unchanged(section, before)


def test_small_spots_need_patch_size(section):
    section.uns["spatial"]["lib"]["scalefactors"]["tissue_hires_scalef"] = SCALE / 4
    before = snapshot(section)
    with pytest.raises(ValueError, match="patch_size>=32"):
        sn.tl.image_features(section, **_fast())
    assert_unchanged(section, before)


# --- plots ---------------------------------------------------------------------------


def test_plots(section):
    import matplotlib.pyplot as plt

    sn.tl.image_features(section, **_fast())
    axes = sn.pl.image_features(section, pcs=(1, 2), show=False)
    assert len(axes) == 2 and axes[0].get_title() == "image PC1"
    assert axes[0].collections[0].get_array().shape == (section.n_obs,)
    axes = sn.pl.image_patches(section, n=6, color_by_pc=1, show=False)
    assert len(axes) == 6
    shown = axes[0].images[0].get_array()
    assert shown.shape == (SPACING, SPACING, 3)
    with pytest.raises(ValueError, match="pcs"):
        sn.pl.image_features(section, pcs=(9,), show=False)
    for bad in (0, 99, 1.5):
        with pytest.raises(ValueError, match="color_by_pc=.* must be a PC number between 1"):
            sn.pl.image_patches(section, n=2, color_by_pc=bad, show=False)
    # on the caller's axes, as every sn.pl function (DESIGN: ax=)
    _, grid = plt.subplots(1, 2)
    assert sn.pl.image_features(section, pcs=(1, 2), ax=grid, show=False) == list(grid)
    assert grid[1].get_title() == "image PC2"
    _, single = plt.subplots()
    assert sn.pl.image_patches(section, n=1, ax=single, show=False) == [single]
    assert single.images[0].get_array().shape == (SPACING, SPACING, 3)
    # one spot by name, not its letters
    name = section.obs_names[3]
    (shown,) = sn.pl.image_patches(section, spots=name, show=False)
    assert shown.get_title().startswith(name)
    plt.close("all")


def test_plots_reuse_an_explicit_patch_size(section):
    """Spots 20 px apart on a low-resolution image need patch_size= (the default is under
    the 32 px a CNN takes); the plots read it back from uns instead of recomputing it."""
    import matplotlib.pyplot as plt

    image = section.uns["spatial"]["lib"]["images"]["hires"]
    section.uns["spatial"]["lib"]["images"]["lowres"] = image[::2, ::2].copy()
    section.uns["spatial"]["lib"]["scalefactors"]["tissue_lowres_scalef"] = SCALE / 2
    with pytest.raises(ValueError, match="patch_size"):
        sn.tl.image_features(section.copy(), img_key="lowres", **_fast())
    sn.tl.image_features(section, img_key="lowres", patch_size=32, **_fast())
    assert section.uns["image_features"]["params"]["patch_size"] == 32
    axes = sn.pl.image_features(section, pcs=(1,), show=False)
    assert axes[0].collections[0].get_array().shape == (section.n_obs,)
    shown = sn.pl.image_patches(section, n=2, show=False)[0].images[0].get_array()
    assert shown.shape == (32, 32, 3)  # the stored size, on the image it was computed on
    # on another image the stored size would be in the wrong pixels: its own default
    shown = sn.pl.image_patches(section, n=2, img_key="hires", show=False)[0].images[0]
    assert shown.get_array().shape == (SPACING, SPACING, 3)
    plt.close("all")


# --- real data -----------------------------------------------------------------------


@pytest.mark.data
def test_visium_crop():
    adata = load_real("visium_mouse_brain_crop")
    library = next(iter(adata.uns["spatial"]))
    spots = spot_image(adata)
    assert spots.patch_size == round(89.44476048022638)
    image = adata.uns["spatial"][library]["images"]["hires"]
    x0, y0 = spots.corners()[0]
    s = spots.patch_size
    np.testing.assert_array_equal(spots.patch(0), image[y0 : y0 + s, x0 : x0 + s])
    jpg = DATA_DIR / "visium_mouse_brain_crop_he.jpg"
    if jpg.is_file():
        from PIL import Image

        np.testing.assert_allclose(
            np.asarray(Image.open(jpg).convert("RGB"), dtype=float).mean(),
            image.astype(float).mean(),
            atol=2.0,
        )
    sn.tl.image_features(adata, weights=None, input_size=32, n_comps=5)
    assert adata.obsm["X_image_features"].shape == (adata.n_obs, 512)
    table = sn.tl.image_gene_association(adata, layer="lognorm", n_pcs=2)
    assert table["qvalue"].between(0, 1).all() and set(table["pc"]) == {1, 2}


def test_more_pcs_than_spots_are_lowered_with_a_warning(section):
    """Centred features of n spots span at most n - 1 dimensions: an n-th PC would be
    numerical noise that image_gene_association would test genes against."""
    with pytest.warns(UserWarning, match="n_comps=500 is more than"):
        sn.tl.image_features(section, **_fast(n_comps=500))
    assert section.obsm["X_image_features_pca"].shape[1] == section.n_obs - 1
    with pytest.warns(UserWarning, match=f"n_comps={section.n_obs} is more than"):
        sn.tl.image_features(section, **_fast(n_comps=section.n_obs))
    variance = section.uns["image_features"]["variance"]
    assert variance.shape == (section.n_obs - 1,) and variance.min() > 1e-6 * variance.max()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sn.tl.image_features(section, **_fast(n_comps=section.n_obs - 1))
    assert section.obsm["X_image_features_pca"].shape[1] == section.n_obs - 1


def test_blank_image_is_refused_and_constant_pcs_are_left_out(section):
    """Patches that are all alike give no PCs: an error, not a NaN variance ratio; a reused
    extractor on such a section gives constant PCs, which the association test leaves out
    (all of them: an error) instead of a table of NaN."""
    blank = section.copy()
    blank.uns["spatial"]["lib"]["images"]["hires"] = np.full((240, 320, 3), 255, np.uint8)
    before = snapshot(blank)
    with pytest.raises(ValueError, match="image features are the same at all 49 spots"):
        sn.tl.image_features(blank, **_fast())
    assert_unchanged(blank, before)
    extractor = sn.tl.image_features(section, **_fast(n_comps=3))
    sn.tl.image_features(blank, model=extractor)
    with pytest.raises(ValueError, match="image PCs .* are constant over the spots"):
        sn.tl.image_gene_association(blank)
    assert "associations" not in blank.uns["image_features"]
    # constant up to float32 rounding (as identical patches give on some CPUs) is constant
    pcs = section.obsm["X_image_features_pca"]
    pcs[:, 1] = 0.5 + np.linspace(0, 2e-7, section.n_obs)
    assert pcs[:, 1].std() > 0
    with pytest.warns(UserWarning, match=r"image PCs \[2\] are constant"):
        table = sn.tl.image_gene_association(section)
    assert sorted(table["pc"].unique()) == [1, 3]
    assert np.isfinite(table[["coef", "r", "pvalue", "qvalue"]].to_numpy()).all()
