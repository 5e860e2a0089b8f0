"""The object ``sn.tl.image_features`` returns: a CNN backbone plus its fitted PCA."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from .._base import check_accelerator_available, named_gpu
from ._backbones import TORCHVISION_BACKBONES, TorchvisionTrunk, preprocessing
from ._model import ImageExpressionModel

logger = logging.getLogger(__name__)

_META = "extractor.json"
_PCA = "pca.npz"
_TRUNK = "backbone.pt"
_MODEL = "expression_model"


def resize_patches(patches: np.ndarray, size: int) -> torch.Tensor:
    """uint8 patches ``(n, s, s, 3)`` to a uint8 tensor ``(n, 3, size, size)`` (antialiased)."""
    from torchvision.transforms.v2 import functional as TF

    tensor = torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2)
    if tensor.shape[-1] != size:
        tensor = TF.resize(tensor, [size, size], antialias=True)
    return tensor.contiguous()


#: a float image whose values all lie at or under this is taken to be in ``[0, 1]``
#: (white = 1.0); above it, in 0-255. Resizing (bicubic, as squidpy and skimage do)
#: overshoots 1.0 a little, and a 0-255 image never has all its values under 2 unless
#: it is black (at most 2 of 255), so the two ranges cannot be confused in practice.
FLOAT_UNIT_MAX = 2.0

#: a uint16 image whose maximum is at or under this (14-bit data or fewer) is nearly
#: black once divided by 257 (at most 63 of 255)
UINT16_DIM_MAX = 16383


def float_white(image: np.ndarray) -> float:
    """The value of white in a float image: ``1.0`` when every value is at most
    :data:`FLOAT_UNIT_MAX`, else ``255.0``.

    Decide it once for a whole image and pass it to :func:`to_rgb_uint8` (``float_max=``)
    for each of its pieces, so all pieces are scaled alike.
    """
    values = np.asarray(image)
    finite = values[np.isfinite(values)]
    return 1.0 if finite.size == 0 or float(finite.max()) <= FLOAT_UNIT_MAX else 255.0


def to_rgb_uint8(image: Any, argument: str = "image", float_max: float | None = None) -> np.ndarray:
    """Convert an image to ``(height, width, 3)`` uint8 RGB.

    Grayscale (2-D or one channel) is repeated into three channels, RGBA loses its alpha
    channel, uint16 is divided by 257 (65535 becomes 255) and other integers are clipped
    to 0-255. Floats are taken to be in ``[0, 1]`` when all their values are at most
    :data:`FLOAT_UNIT_MAX` (2.0; a resize's overshoot just above 1.0 is clipped, not taken
    for 0-255 data), else in 0-255; either way they are clipped to the range. Anything else
    without three channels is an error.

    Parameters
    ----------
    image
        The image, ``(height, width)`` or ``(height, width, channels)``.
    argument
        How to name the image in error messages.
    float_max
        For a float image: the value of white (``1.0`` or ``255.0``). ``None``: decided
        from the image's values (:func:`float_white`); pass the decision made on a whole
        image when converting its pieces one at a time.

    Returns
    -------
    numpy.ndarray
        The uint8 ``(height, width, 3)`` image.

    Raises
    ------
    ValueError
        If the image has another shape or number of channels, an unsupported dtype, NaN or
        infinite values, or ``float_max`` is not a positive number.

    Warns
    -----
    UserWarning
        If a uint16 image's maximum is at most :data:`UINT16_DIM_MAX` (12- or 14-bit
        data), which is nearly black after the division by 257: rescale it to uint8 or to
        floats in ``[0, 1]`` first.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(
            f"{argument} has shape {img.shape}; expected (height, width) or "
            "(height, width, channels)"
        )
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    if img.shape[2] != 3:
        raise ValueError(
            f"{argument} has {img.shape[2]} channels after converting grayscale and RGBA; "
            "image_features needs an RGB image (3 channels): pass an RGB, RGBA or grayscale image"
        )
    if img.dtype == np.uint8:
        return np.ascontiguousarray(img)
    if img.dtype == np.uint16:
        top = int(img.max()) if img.size else 0
        if 0 < top <= UINT16_DIM_MAX:
            warnings.warn(
                f"{argument} is uint16 with maximum {top} (12- or 14-bit data?); it is "
                f"divided by 257 for 16-bit data, so it will look nearly black (maximum "
                f"{round(top / 257)} of 255): rescale it to uint8 or to floats in [0, 1] "
                "first, e.g. (image / image.max() * 255).astype(np.uint8)",
                UserWarning,
                stacklevel=2,
            )
        return (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * 255
    if np.issubdtype(img.dtype, np.integer):
        return np.clip(img, 0, 255).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        if not np.all(np.isfinite(img)):
            raise ValueError(f"{argument} holds NaN or infinite pixel values")
        if float_max is None:
            float_max = float_white(img)
        elif isinstance(float_max, bool) or not float_max > 0 or not np.isfinite(float_max):
            raise ValueError(
                f"float_max must be a positive number (1.0 or 255.0), got {float_max!r}"
            )
        scale = np.float32(255.0 / float(float_max))
        return np.clip(img.astype(np.float32) * scale + 0.5, 0, 255).astype(np.uint8)
    raise ValueError(f"{argument} has unsupported dtype {img.dtype}; use uint8, uint16 or float")


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def pick_device(accelerator: str = "auto") -> torch.device:
    """The device of an ``accelerator`` named as Lightning's: ``"auto"`` takes CUDA when
    present, else the CPU; a GPU asked for by name must be present."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator={accelerator!r} is not one of {list(ACCELERATORS)}")
    check_accelerator_available(accelerator)
    gpu = named_gpu(accelerator)
    if gpu is not None:
        return torch.device(gpu)
    if accelerator == "auto" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


class ImageFeatureExtractor:
    """A CNN backbone that turns spot patches into features, and the PCA fitted on them.

    Returned by :func:`scneural.tl.image_features`; pass it back as ``model=`` to apply the
    same backbone and PCA to another section without retraining. Save with :meth:`save` and
    restore with :meth:`load`.

    Attributes
    ----------
    backbone
        ``"vgg16"``, ``"resnet50"`` or ``"expression"``.
    weights
        Where the backbone's weights came from (``"imagenet"``, a path, ``"random"`` or
        ``"trained"`` for the expression CNN).
    input_size
        Side (pixels) the patches are resized to before the CNN.
    patch_size
        Side (image pixels) of the patches cut when fitting.
    trunk
        The torchvision trunk (``None`` for ``"expression"``).
    expression_model
        The trained :class:`~scneural.models.ImageExpressionModel` (``"expression"`` only).
    scaler, pca
        The standardisation and PCA of the features (scikit-learn), fitted by :meth:`fit_pca`.
    """

    def __init__(
        self,
        backbone: str,
        *,
        weights: str,
        input_size: int,
        patch_size: int,
        trunk: TorchvisionTrunk | None = None,
        expression_model: ImageExpressionModel | None = None,
        info: dict[str, Any] | None = None,
        scale_factor: float | None = None,
    ):
        if (trunk is None) == (expression_model is None):
            raise ValueError("give exactly one of trunk= and expression_model=")
        self.backbone = backbone
        self.weights = weights
        self.input_size = int(input_size)
        self.patch_size = int(patch_size)
        #: scale factor of the image ``patch_size`` is measured on (None: unknown)
        self.scale_factor = None if scale_factor is None else float(scale_factor)
        self.trunk = trunk
        self.expression_model = expression_model
        self.info = dict(info or {})
        self.scaler: StandardScaler | None = None
        self.pca: PCA | None = None
        self._preprocess = preprocessing(backbone, input_size) if trunk is not None else None

    def __repr__(self) -> str:
        fitted = "fitted" if self.pca is not None else "unfitted"
        return (
            f"ImageFeatureExtractor(backbone={self.backbone!r}, weights={self.weights!r}, "
            f"input_size={self.input_size}, patch_size={self.patch_size}, "
            f"n_features={self.n_features}, {fitted} PCA)"
        )

    @property
    def n_features(self) -> int:
        """Length of the feature vector of one patch."""
        if self.trunk is not None:
            return self.trunk.n_features
        return int(self.expression_model.module.n_features)

    @property
    def n_comps(self) -> int:
        """Number of principal components of the fitted PCA."""
        return 0 if self.pca is None else int(self.pca.n_components_)

    @torch.inference_mode()
    def features_of(
        self,
        patches: np.ndarray,
        device: torch.device | None = None,
        float_max: float | None = None,
    ) -> np.ndarray:
        """Features ``(n, n_features)`` of uint8 patches ``(n, s, s, 3)`` (one minibatch);
        float or uint16 patches are converted to uint8 first.

        Parameters
        ----------
        patches
            RGB patches of any side ``s``, resized (antialiased) to :attr:`input_size`:
            uint8, or floats or uint16, as :func:`to_rgb_uint8` converts them.
        device
            torch device to run the CNN on; ``None``: the CPU for a torchvision backbone,
            the expression model's current device for ``"expression"``.
        float_max
            For float patches: the value of white, ``1.0`` or ``255.0``. ``None``: decided
            from this call's patches (:func:`float_white`). When passing one image's
            patches in several calls, decide it once for the image and pass it to each, so
            every minibatch is scaled alike (:meth:`features` cuts patches from the
            image already converted to uint8, so this only concerns direct calls).

        Returns
        -------
        numpy.ndarray
            float32 array of shape ``(n, n_features)``.

        Raises
        ------
        ValueError
            If float patches hold NaN or infinite values, ``float_max`` is not a positive
            number, or their dtype cannot be converted.
        """
        patches = np.asarray(patches)
        if patches.dtype != np.uint8:
            flat = to_rgb_uint8(patches.reshape(-1, *patches.shape[-2:]), "patches", float_max)
            patches = flat.reshape(patches.shape)
        images = resize_patches(patches, self.input_size)
        if self.expression_model is not None:
            model = self.expression_model
            if device is not None:
                model.module.to(device)
            return model.embed_patches(images.permute(0, 2, 3, 1).numpy())
        trunk = self.trunk.eval()
        device = device or torch.device("cpu")
        trunk.to(device)
        x = self._preprocess(images.to(device))
        return trunk(x).float().cpu().numpy()

    def features(self, spots: Any, batch_size: int = 64, accelerator: str = "auto") -> np.ndarray:
        """Features of every spot of a :class:`~scneural.tl._image_patches.SpotImage`.

        Patches are cut and passed through the CNN ``batch_size`` at a time, so only one
        minibatch of patches is in memory at once.

        Parameters
        ----------
        spots
            The image and spot centres to cut patches from (built by
            :func:`scneural.tl.image_features`).
        batch_size
            Patches per minibatch.
        accelerator
            ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"gpu"``/``"cuda"``
            or ``"mps"``.

        Returns
        -------
        numpy.ndarray
            float32 array of shape ``(n_spots, n_features)``, in the order of the spots.

        Raises
        ------
        ValueError
            If ``accelerator`` is unknown or names a GPU that is not available.
        """
        device = pick_device(accelerator)
        parts = [self.features_of(batch, device) for batch in spots.iter_batches(batch_size)]
        return np.concatenate(parts, axis=0).astype(np.float32)

    def fit_pca(self, features: np.ndarray, n_comps: int, random_state: int = 0) -> np.ndarray:
        """Standardise the features and fit a PCA; returns the spots' PC scores.

        The fitted standardisation and PCA are kept (:attr:`scaler`, :attr:`pca`) for
        :meth:`transform`.

        Parameters
        ----------
        features
            Features of the spots, shape ``(n_spots, n_features)`` (from :meth:`features`).
        n_comps
            Number of principal components; more than ``min(n_spots - 1, n_features)``
            (the most that centred features can have) are cut to that, with a UserWarning.
        random_state
            Seed of scikit-learn's PCA solver.

        Returns
        -------
        numpy.ndarray
            float32 PC scores of shape ``(n_spots, n_comps)``.

        Raises
        ------
        ValueError
            If every feature is the same at all spots (nothing for a PCA to find; also the
            case for a single spot).

        Warns
        -----
        UserWarning
            If ``n_comps`` is more than ``min(n_spots - 1, n_features)``.
        """
        n_spots, n_features = features.shape
        scaler = StandardScaler().fit(features)
        if not np.any(scaler.var_ > 0):
            # PCA would give PCs of zeros and a variance ratio of 0/0 = NaN
            raise ValueError(
                f"the image features are the same at all {n_spots} spots, so "
                "there is nothing for a PCA to find: the patches do not differ (a blank or "
                "uniform image, or every spot on one uniform area?); check the image in "
                "adata.uns['spatial'] and the spot coordinates"
            )
        # centring leaves n_spots - 1 dimensions: a further PC would be numerical noise
        possible = int(min(n_spots - 1, n_features))
        if n_comps > possible:
            message = (
                f"n_comps={n_comps} is more than the {n_spots} spots x {n_features} features "
                f"allow (at most min(n_spots - 1, n_features) after centring); computing "
                f"{possible} PCs"
            )
            logger.warning(message)
            warnings.warn(message, UserWarning, stacklevel=3)
        n_comps = int(min(n_comps, possible))
        self.scaler = scaler
        self.pca = PCA(n_components=n_comps, random_state=random_state)
        return self.pca.fit_transform(self.scaler.transform(features)).astype(np.float32)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """PC scores of features with the fitted standardisation and PCA.

        Parameters
        ----------
        features
            Features of other spots, shape ``(n, n_features)``, from the same backbone.

        Returns
        -------
        numpy.ndarray
            float32 PC scores of shape ``(n, n_comps)``.

        Raises
        ------
        ValueError
            If the PCA is not fitted (:meth:`fit_pca` first).
        """
        if self.pca is None:
            raise ValueError("the extractor's PCA is not fitted; call fit_pca first")
        return self.pca.transform(self.scaler.transform(features)).astype(np.float32)

    def save(self, dir_path: str | Path, overwrite: bool = False) -> None:
        """Save backbone weights (or the expression model), PCA and settings into a folder.

        Writes ``extractor.json`` (settings), ``pca.npz`` (when the PCA is fitted) and
        ``backbone.pt`` or, for ``"expression"``, the model in ``expression_model/``.

        Parameters
        ----------
        dir_path
            Folder to write (created if needed).
        overwrite
            Write into a folder that is not empty (its files of the same names are
            replaced).

        Raises
        ------
        ValueError
            If ``dir_path`` exists, is not empty and ``overwrite`` is ``False``.
        """
        path = Path(dir_path)
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise ValueError(f"{path} exists and is not empty; pass overwrite=True")
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "backbone": self.backbone,
            "weights": self.weights,
            "input_size": self.input_size,
            "patch_size": self.patch_size,
            "scale_factor": self.scale_factor,
            "info": self.info,
        }
        (path / _META).write_text(json.dumps(meta, indent=1, default=str))
        if self.pca is None:  # overwrite=True: no earlier extractor's PCA is loaded with it
            (path / _PCA).unlink(missing_ok=True)
        else:
            np.savez(
                path / _PCA,
                components=self.pca.components_,
                mean=self.pca.mean_,
                explained_variance=self.pca.explained_variance_,
                explained_variance_ratio=self.pca.explained_variance_ratio_,
                singular_values=self.pca.singular_values_,
                scaler_mean=self.scaler.mean_,
                scaler_scale=self.scaler.scale_,
                scaler_var=self.scaler.var_,
                n_samples=np.array(self.scaler.n_samples_seen_),
            )
        if self.trunk is not None:
            torch.save(self.trunk.state_dict(), path / _TRUNK)
        else:
            self.expression_model.save(str(path / _MODEL), overwrite=True, save_anndata=True)

    @classmethod
    def load(cls, dir_path: str | Path) -> ImageFeatureExtractor:
        """Restore an extractor written by :meth:`save`.

        Parameters
        ----------
        dir_path
            The folder :meth:`save` wrote.

        Returns
        -------
        ImageFeatureExtractor
            The extractor, its backbone on the CPU, with its PCA when one was saved.

        Raises
        ------
        ValueError
            If ``dir_path`` holds no saved extractor.
        """
        path = Path(dir_path)
        if not (path / _META).is_file():
            raise ValueError(f"{path} holds no saved ImageFeatureExtractor ({_META} missing)")
        meta = json.loads((path / _META).read_text())
        trunk = model = None
        if meta["backbone"] in TORCHVISION_BACKBONES:
            trunk = TorchvisionTrunk(meta["backbone"])
            state = torch.load(path / _TRUNK, map_location="cpu", weights_only=True)
            trunk.load_state_dict(state)
        else:
            model = ImageExpressionModel.load(str(path / _MODEL), accelerator="cpu")
        extractor = cls(
            meta["backbone"],
            weights=meta["weights"],
            input_size=meta["input_size"],
            patch_size=meta["patch_size"],
            trunk=trunk,
            expression_model=model,
            info=meta.get("info"),
            scale_factor=meta.get("scale_factor"),
        )
        if (path / _PCA).is_file():
            stored = np.load(path / _PCA)
            scaler = StandardScaler()
            scaler.mean_, scaler.scale_ = stored["scaler_mean"], stored["scaler_scale"]
            scaler.var_, scaler.n_samples_seen_ = stored["scaler_var"], int(stored["n_samples"])
            scaler.n_features_in_ = scaler.mean_.shape[0]
            pca = PCA(n_components=stored["components"].shape[0])
            pca.components_, pca.mean_ = stored["components"], stored["mean"]
            pca.explained_variance_ = stored["explained_variance"]
            pca.explained_variance_ratio_ = stored["explained_variance_ratio"]
            pca.singular_values_ = stored["singular_values"]
            pca.n_components_ = pca.components_.shape[0]
            pca.n_features_in_ = pca.components_.shape[1]
            pca.whiten = False
            extractor.scaler, extractor.pca = scaler, pca
        return extractor
