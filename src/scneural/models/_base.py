"""Model-level code shared by every scneural model (torch and JAX)."""

from __future__ import annotations

import functools
import inspect
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
import rich.pretty  # noqa: F401  scvi-tools 1.4.2's view_anndata_setup uses it unimported
import torch
from anndata import AnnData
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_info
from scvi import settings
from scvi.dataloaders import DataSplitter

from scneural._docs import doc_params
from scneural._utils import class_keyword_names, history_to_dict, with_suggestion
from scneural._validation import (
    DIVERGED_FIX,
    check_fraction,
    check_kwargs_dict,
    check_train_size,
    first_nonfinite_loss,
)

TrainMethod = TypeVar("TrainMethod", bound=Callable[..., Any])


def _plain(value: Any) -> Any:
    """``value`` as plain Python data a saved model and ``.h5ad`` keep: numbers, strings,
    booleans, ``None``, and lists and dicts of them; an array (numpy, pandas, torch) becomes
    a summary of its type, shape and dtype (its repr would be truncated, e.g. per-cell start
    clusters); anything else (a callback, a logger) becomes its ``repr``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        if len(value.shape) == 0 and hasattr(value, "item"):  # a 0-d array is one number
            return _plain(value.item())
        return f"{type(value).__name__} of shape {tuple(value.shape)}, dtype {value.dtype}"
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return repr(value)


def records_training(method: TrainMethod) -> TrainMethod:
    """Decorate a model's ``train`` (or ``pretrain``) to keep every argument it ran with.

    Once the call returns, its arguments (defaults filled in, ``**kwargs`` merged) are
    stored under the method's name in ``model.training_params_``. scvi-tools saves
    attributes ending in ``_`` with the model, so a loaded model still says how it was
    trained, and the tools write this record to ``uns[key]["params"]["training"]``: a model
    default that changes between versions (``train_size``, ``max_grad_norm``, ...) stays
    visible in old results. It decorates methods of :class:`ScneuralModelMixin` models.
    A training whose loss became NaN or infinite gets a ``RuntimeWarning`` naming the
    curve and epoch, and how to lower the learning rate: ``plan_kwargs``, or what the
    model's ``_diverged_fixes`` (method name -> advice) says for this method.
    """
    signature = inspect.signature(method)
    var_keyword = next(
        (p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), None
    )

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = {name: value for name, value in bound.arguments.items() if name != "self"}
        arguments.update(arguments.pop(var_keyword, {}) if var_keyword else {})
        result = method(self, *args, **kwargs)
        # kept only once the call succeeded: a failed run leaves the earlier record
        self.training_params_ = {**self.training_record(), method.__name__: _plain(arguments)}
        where = first_nonfinite_loss(self.history_dict())
        if where:  # the tools refuse the NaN results; a model used directly only gets this
            warnings.warn(
                f"{type(self).__name__}.{method.__name__}: training diverged ({where}), so "
                "the model's outputs are NaN or infinite. "
                f"{getattr(self, '_diverged_fixes', {}).get(method.__name__, DIVERGED_FIX)}",
                RuntimeWarning,
                stacklevel=2,
            )
        return result

    return wrapper  # type: ignore[return-value]


def ends_in_single_cell(n_obs: int, train_size: float, batch_size: int) -> bool:
    """Whether a training split of ``train_size`` of ``n_obs`` cells (scvi-tools rounds it
    up) leaves one cell alone in its last minibatch of ``batch_size``."""
    n_train = math.ceil(min(float(train_size), 1.0) * n_obs)
    return n_train > batch_size and n_train % batch_size == 1


class SingleCellSafeDataSplitter(DataSplitter):
    """scvi-tools' :class:`~scvi.dataloaders.DataSplitter` whose training loader drops a
    last minibatch of one cell.

    Batch norm cannot train on one cell ("Expected more than 1 value per channel"). With
    ``train_size=None`` scvi-tools moves such a cell to the validation set itself; with an
    explicit ``train_size`` it only warns, so here the training loader drops its last,
    one-cell minibatch instead (a different cell each epoch, as the loader shuffles). On
    several devices (DDP) each process batches its own share of the training cells, so the
    share decides (scvi-tools' move to validation looks at all of them). A ``drop_last``
    the caller passes (``datasplitter_kwargs``) wins.

    The arguments it gets are checked first (see :meth:`check_loader_kwargs`).
    """

    #: loader arguments the splitter sets itself for each set of cells
    _set_by_splitter: ClassVar[dict[str, str]] = {
        "adata_manager": "the splitter passes the model's data",
        "dataset": "the splitter passes the model's data",
        "indices": "the splitter passes each set's cells",
        "shuffle": "the training loader always shuffles and the others never do",
        "batch_sampler": "scvi-tools batches with its own sampler; pass sampler= instead",
    }
    #: splitter arguments scvi-tools' ``train`` passes from its own (``batch_size=``...),
    #: with what to do instead of naming them in ``datasplitter_kwargs``
    _passed_by_train: ClassVar[dict[str, str]] = {
        **{
            name: f"train takes itself: pass {name}= to train (or to the tool) instead"
            for name in (
                "train_size",
                "validation_size",
                "shuffle_set_split",
                "batch_size",
                "load_sparse_tensor",
            )
        },
        "distributed_sampler": "train sets from the strategy (on under DDP)",
        "iter_ndarray": "the JAX models' train sets (they read numpy minibatches)",
    }

    @classmethod
    def check_train_kwargs(cls, datasplitter_kwargs: Any) -> None:
        """Refuse ``datasplitter_kwargs`` that scvi-tools' ``train`` cannot pass on.

        ``train`` builds the splitter with its own ``batch_size``, ``train_size``... and
        then ``**datasplitter_kwargs``, so naming one of those there failed in Python's
        words ("got multiple values for keyword argument 'batch_size'"), which did not say
        where to pass it; a ``datasplitter_kwargs`` that is not a dict failed as "argument
        after ** must be a mapping". Every scneural model's ``train`` calls this first.

        Raises
        ------
        TypeError
            If ``datasplitter_kwargs`` is not a dict or holds a name ``train`` passes to
            the splitter itself.
        """
        given = check_kwargs_dict(
            datasplitter_kwargs,
            "datasplitter_kwargs",
            "data splitter and loader arguments (e.g. {'num_workers': 2})",
        )
        passed = [name for name in given if name in cls._passed_by_train]
        if passed:
            raise TypeError(
                "datasplitter_kwargs holds "
                + "; ".join(f"{name!r}, which {cls._passed_by_train[name]}" for name in passed)
            )

    @classmethod
    def check_loader_kwargs(cls, kwargs: Mapping[str, Any]) -> None:
        """Refuse arguments neither the splitter nor its data loaders take.

        scvi-tools' ``train`` passes ``datasplitter_kwargs`` on to the splitter, which
        passes what it does not take itself to every data loader it builds, and so to
        torch's ``DataLoader``. A misspelt or foreign name used to fail there, inside the
        Lightning loop, as torch's ``DataLoader.__init__() got an unexpected keyword
        argument``, which named neither ``datasplitter_kwargs`` nor the fix.

        Parameters
        ----------
        kwargs
            The keyword arguments the splitter got: ``train``'s own (``batch_size``...) and
            the caller's ``datasplitter_kwargs``.

        Raises
        ------
        TypeError
            If ``kwargs`` holds a name that no step takes (with the closest known names)
            or one that the splitter sets itself.
        """
        known = (
            class_keyword_names(cls, "__init__")
            | class_keyword_names(cls.data_loader_cls, "__init__")  # drop_last, num_workers...
        ) - set(cls._set_by_splitter)
        set_by_splitter = [name for name in kwargs if name in cls._set_by_splitter]
        problems = [f"{name!r}: {cls._set_by_splitter[name]}" for name in set_by_splitter]
        unknown = [
            with_suggestion(name, known)
            for name in kwargs
            if name not in known and name not in set_by_splitter
        ]
        if unknown:
            problems.append(
                f"{', '.join(unknown)}, which scvi-tools' data splitter and loaders do not "
                "take; besides train's own arguments (batch_size, train_size...) they take "
                f"{', '.join(sorted(known - cls._passed_by_train.keys()))}"
            )
        if problems:
            raise TypeError(f"datasplitter_kwargs holds {'; '.join(problems)}")

    def __init__(self, adata_manager, train_size: float | None = None, *args, **kwargs):
        self.check_loader_kwargs(kwargs)
        self._batch_size = kwargs.get("batch_size") or settings.batch_size
        self._drop_last_given = "drop_last" in kwargs
        # decided again per process in train_dataloader; said here too so that scvi-tools'
        # split check does not warn of a one-cell last batch that will be dropped
        if train_size and not self._drop_last_given:
            n_obs = adata_manager.adata.n_obs
            if ends_in_single_cell(n_obs, train_size, self._batch_size):
                kwargs["drop_last"] = True
        super().__init__(adata_manager, train_size, *args, **kwargs)

    def _cells_per_process(self) -> int:
        """Training cells one process batches: all of them, or its share under DDP
        (scvi-tools' sampler pads the shares to the same size, or cuts them with
        ``drop_dataset_tail``)."""
        n_train = len(self.train_idx)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if not (self.data_loader_kwargs.get("distributed_sampler") and distributed):
            return n_train
        world_size = torch.distributed.get_world_size()
        if self.data_loader_kwargs.get("drop_dataset_tail"):
            return n_train // world_size
        return math.ceil(n_train / world_size)

    def train_dataloader(self):
        if not self._drop_last_given:
            self.drop_last = ends_in_single_cell(self._cells_per_process(), 1.0, self._batch_size)
        return super().train_dataloader()


def with_obs(adata: AnnData, obs: Any) -> AnnData:
    """An AnnData sharing ``adata``'s matrices (X and layers, not copied) with another
    ``obs``: lets a model read cells that lack a column its registry asks for, without
    writing that column into the caller's object."""
    layers = {name: adata.layers[name] for name in adata.layers}
    return AnnData(X=adata.X, obs=obs, var=adata.var[[]].copy(), layers=layers)


class ScneuralModelMixin:
    """Helpers every scneural model shares: history as arrays and batched inference."""

    #: history entries that carry nothing for this model (e.g. scvi's ELBO terms)
    _history_exclude: tuple[str, ...] = ()
    #: used by scvi-tools' training mixins (torch and JAX) to split and load the cells
    _data_splitter_cls = SingleCellSafeDataSplitter

    @staticmethod
    def _ema_callback(decay: float) -> Any:
        """The Lightning callback that keeps an exponential moving average of the weights
        (see :func:`ema_trainer_kwargs`); JAX models return their own."""
        from lightning.pytorch.callbacks import WeightAveraging
        from torch.optim.swa_utils import get_ema_multi_avg_fn

        # Lightning's EMAWeightAveraging updates tensor by tensor (about 20 ms a step for
        # scGen's 4.7M weights on one CPU thread, a quarter of the step); torch's multi-tensor
        # EMA (one fused lerp) takes 3-4 ms. Batch-norm statistics are averaged too
        # (use_buffers), so they match the weights.
        return WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    @classmethod
    def saved_var_names(cls, dir_path: str, prefix: str | None = None) -> np.ndarray:
        """The genes (in order) of a model saved in ``dir_path``, without loading it.

        Parameters
        ----------
        dir_path
            Folder the model was saved into (``model.save(dir_path)``).
        prefix
            The ``prefix`` the model was saved with (``None``: none).

        Returns
        -------
        numpy.ndarray
            1-D array of the gene names (``var_names``) the model was trained on, in its
            order.

        Raises
        ------
        FileNotFoundError
            If ``dir_path`` holds no saved model (``{prefix}model.pt``).
        """
        return np.asarray(cls._saved_model(dir_path, prefix)["var_names"])

    @staticmethod
    def _saved_model(dir_path: str, prefix: str | None = None) -> dict[str, Any]:
        """What ``model.save`` wrote to ``{prefix}model.pt`` (weights, ``var_names`` and
        ``attr_dict``); a missing file is a FileNotFoundError naming the prefixes found."""
        path = os.path.join(dir_path, f"{prefix or ''}model.pt")
        if not os.path.exists(path):
            if not os.path.isdir(dir_path):
                hint = f"; {dir_path} does not exist"
            else:
                found = sorted(
                    name.removesuffix("model.pt")
                    for name in os.listdir(dir_path)
                    if name.endswith("model.pt")
                )
                prefixes = " or ".join(f"prefix={p!r}" for p in found)
                hint = f"; {dir_path} holds a model saved with {prefixes}" if found else ""
            raise FileNotFoundError(
                f"no saved model at {path}{hint}. Pass the folder and prefix model.save used"
            )
        return torch.load(path, map_location="cpu", weights_only=False)

    @classmethod
    def check_saved_model(cls, dir_path: str, prefix: str | None = None) -> dict[str, Any]:
        """Refuse a folder without a saved model of this class before scvi-tools reads it.

        scvi-tools answers a missing file with advice about pre-0.15 saves, and a model of
        another class (e.g. a ``JaxClassifier`` loaded with ``Classifier.load``) with "a
        model from a different class"; these messages name the file and the class to use.

        Parameters
        ----------
        dir_path
            The folder ``model.save`` wrote.
        prefix
            The ``prefix`` it was saved with.

        Returns
        -------
        dict
            What ``model.save`` wrote to ``{prefix}model.pt``: ``"var_names"``,
            ``"attr_dict"`` (with the registry) and the weights.

        Raises
        ------
        FileNotFoundError
            If ``dir_path`` holds no ``{prefix}model.pt`` (naming other prefixes found).
        ValueError
            If the saved model is of another class.
        """
        saved = cls._saved_model(dir_path, prefix)
        name = saved["attr_dict"]["registry_"].get("model_name")
        if name is not None and name != cls.__name__:
            backend = (
                " (the JAX backend's model)"
                if name == f"Jax{cls.__name__}"
                else " (the torch backend's model)"
                if cls.__name__ == f"Jax{name}"
                else ""
            )
            raise ValueError(
                f"{dir_path} holds a {name}{backend}, not a {cls.__name__}: load it with "
                f"sn.models.{name}.load"
            )
        return saved

    @classmethod
    def _query_for_load(cls, adata: AnnData, registry: dict) -> AnnData:
        """``adata`` as :meth:`load` sets it up, given the saved registry (a hook: the
        classifier reads cells to annotate through a light copy)."""
        return adata

    @classmethod
    @doc_params()
    def load(cls, dir_path: str, adata: AnnData | None = None, **kwargs):
        """scvi-tools' ``load``, refusing an ``adata`` whose genes are not the saved model's
        in the same order (scvi-tools only warns, and the model then reads the wrong genes).

        Select them first: ``adata[:, Model.saved_var_names(dir_path)]``. Without ``adata``
        the AnnData saved with the model (``save_anndata=True``) is used; a model saved
        without one cannot be rebuilt from its registry alone (scvi-tools reports only
        "adata or registry must be provided"), and one whose genes are not the model's (left
        by an earlier save into the folder) is refused as well.

        As in scvi-tools, ``adata`` is set up for the model in place: its ``obs`` gains
        ``_scvi_*`` columns and its ``uns`` ``_scvi_*`` entries. Pass ``adata.copy()`` to keep
        an AnnData as it is (the tools, with ``model=``, never write these into yours).

        Parameters
        ----------
        {load_params}

        Returns
        -------
        ScneuralModelMixin
            The model, an instance of the class ``load`` is called on (``ScGen.load``
            gives a :class:`~scneural.models.ScGen`), with the saved weights and
            settings, set up on ``adata``.

        Raises
        ------
        FileNotFoundError
            If ``dir_path`` holds no model saved with ``prefix``.
        ValueError
            If the folder holds a model of another class (e.g. the other backend's), if
            ``adata``'s genes are not the saved model's in the same order, or, without
            ``adata``, if the model was saved without its AnnData or the AnnData in the
            folder is not this model's.
        """
        prefix = kwargs.get("prefix") or ""
        saved_model = cls.check_saved_model(dir_path, prefix)
        saved = pd.Index(np.asarray(saved_model["var_names"]).astype(str))
        if adata is None:
            if not os.path.exists(os.path.join(dir_path, f"{prefix}adata.h5ad")):
                raise ValueError(
                    f"{dir_path} holds a {cls.__name__} saved without its AnnData "
                    "(save_anndata=False), so load needs adata=: pass cells with the model's "
                    f"genes, adata[:, {cls.__name__}.saved_var_names(dir_path)], or save the "
                    "model again with save_anndata=True"
                )
            model = super().load(dir_path, adata=adata, **kwargs)
            # save(overwrite=True) without save_anndata=True leaves an earlier model's
            # adata.h5ad, which scvi-tools loads with only a warning
            if not pd.Index(model.adata.var_names.astype(str)).equals(saved):
                raise ValueError(
                    f"the AnnData saved in {dir_path} ({prefix}adata.h5ad) is not this "
                    f"model's: its genes differ from the {len(saved)} the model was trained "
                    "on. It was left by an earlier save (save(overwrite=True) keeps it "
                    "unless save_anndata=True); pass adata= with the model's genes, "
                    f"adata[:, {cls.__name__}.saved_var_names(dir_path)], or save the model "
                    "again with save_anndata=True"
                )
            return model
        given = pd.Index(adata.var_names.astype(str))
        if not given.equals(saved):
            missing = saved.difference(given)
            how = (
                f"lacks {len(missing)} of them (e.g. {list(missing[:5])})"
                if len(missing)
                else "has them in another order"
                if len(given) == len(saved)
                else f"has {len(given) - len(saved)} more"
            )
            raise ValueError(
                f"adata's genes are not the {len(saved)} genes of the saved model: it "
                f"{how}. Pass adata[:, {cls.__name__}.saved_var_names(dir_path)]"
            )
        adata = cls._query_for_load(adata, saved_model["attr_dict"]["registry_"])
        return super().load(dir_path, adata=adata, **kwargs)

    def history_dict(self) -> dict[str, np.ndarray]:
        """Per-epoch training curves (``model.history``) as one array per metric.

        Returns
        -------
        dict[str, numpy.ndarray]
            Metric name (e.g. ``"train_loss"``, ``"validation_loss"``) -> its values, one
            per epoch (1-D float64), of the last ``train``; empty before training. Entries
            that carry nothing for this model (scvi-tools' ELBO terms) are left out.
        """
        history = history_to_dict(getattr(self, "history_", None))
        return {
            name: values
            for name, values in history.items()
            if not any(name.startswith(prefix) for prefix in self._history_exclude)
        }

    def training_record(self) -> dict[str, dict[str, Any]]:
        """Arguments of every :func:`records_training` call that trained this model, by
        method name (empty for a model saved before the record existed).

        Returns
        -------
        dict[str, dict[str, Any]]
            Method name (``"train"``, ``"pretrain"``) -> the arguments of its last
            successful call, defaults filled in and ``**kwargs`` merged, as plain Python
            data (a value that is not, e.g. a logger, as its ``repr``). A copy: changing it
            does not change the model.
        """
        return dict(getattr(self, "training_params_", None) or {})

    def _ready_for_inference(self) -> bool:
        """Whether the weights are trained (a model may accept a partly trained state)."""
        return bool(self.is_trained_)

    @torch.inference_mode()
    def _batched_inference(
        self,
        adata: AnnData | None,
        outputs: Sequence[str],
        *,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        transform: Callable[[dict[str, Any]], dict[str, torch.Tensor]] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the module's ``inference`` over ``adata`` in minibatches.

        Returns the requested inference outputs concatenated over cells, as numpy arrays.
        """
        if not self._ready_for_inference():
            raise RuntimeError(
                f"this {type(self).__name__} has not been trained: its outputs would come "
                "from random weights; call train() first (or load a trained model)"
            )
        adata = self._validate_anndata(adata)
        loader = self._make_data_loader(
            adata=adata, indices=indices, batch_size=batch_size or 1024, shuffle=False
        )
        self.module.eval()
        collected: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
        for tensors in loader:
            inference_inputs = self.module._get_inference_input(tensors)
            result = self.module.inference(**inference_inputs)
            if transform is not None:
                result = transform(result)
            for name in outputs:
                collected[name].append(result[name].detach().cpu().numpy())
        return {name: np.concatenate(parts, axis=0) for name, parts in collected.items()}


def build_logger(
    logger: Any, save_dir: str | os.PathLike | None = None, name: str = "lightning_logs"
) -> Any:
    """Lightning logger(s) for ``train``: scvi-tools' history logger plus the one asked for.

    ``logger`` is ``None`` or ``False`` (Lightning's "no logger"; history only),
    ``"tensorboard"``, ``"csv"`` or a Lightning :class:`~lightning.pytorch.loggers.Logger`.
    The two named loggers write to ``save_dir/name/version_N``; ``save_dir`` is the
    Trainer's ``default_root_dir`` when given (``None``: the working directory, as in
    Lightning). The history logger always comes first so ``model.history`` is filled
    whatever else is logged.
    """
    if logger is None or logger is False:
        return None
    from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
    from scvi.train._logger import SimpleLogger

    save_dir = "." if save_dir is None else save_dir
    if logger == "tensorboard":
        logger = TensorBoardLogger(save_dir=save_dir, name=name)
    elif logger == "csv":
        logger = CSVLogger(save_dir=save_dir, name=name)
    elif not isinstance(logger, Logger):
        raise ValueError(
            "logger must be None (or False), 'tensorboard', 'csv' or a Lightning Logger, "
            f"got {logger!r}"
        )
    return [SimpleLogger(), logger]


def several_devices(devices: Any) -> bool:
    """Whether Lightning's ``devices`` asks for more than one device: a number above 1,
    ``-1`` (all of them), or a list of several ids (``[0, 1]``, ``"0,1"``)."""
    if isinstance(devices, str):
        parts = [part for part in devices.split(",") if part.strip()]
        if len(parts) != 1:
            return len(parts) > 1
        try:
            devices = int(parts[0])
        except ValueError:  # "auto": one device (scvi-tools' choice for GPUs)
            return False
    if isinstance(devices, Sequence):
        return len(devices) > 1
    if isinstance(devices, int | np.integer) and not isinstance(devices, bool):
        return bool(devices == -1 or devices > 1)
    return False


#: Lightning's DDP strategies, by name, that have a ``_find_unused_parameters_true`` twin
_DDP_STRATEGIES = ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")


class OneThreadPerForkedProcess(Callback):
    """Compute on one CPU thread in each process a fork-based strategy starts.

    ``"ddp_fork"`` / ``"ddp_notebook"`` (Lightning's only choice for several devices in a
    notebook) fork the training processes from the calling one. torch's wheels parallelise
    CPU operations with GNU OpenMP, which cannot run a parallel region again in a forked
    child once the parent has used one: the child's first multi-threaded operation waits
    forever (torch's DataLoader workers run on one thread for the same reason). In a
    notebook the parent has usually computed by then (an earlier training, a latent space),
    and Lightning gives each process ``cpu_count // n_processes`` threads unless
    ``OMP_NUM_THREADS`` says otherwise, so without this a forked training hangs whenever a
    process gets two or more threads (two processes on 4 cores). Processes started fresh
    (``"ddp"``, ``"ddp_spawn"``) keep their threads. It must come before other callbacks,
    whose ``setup`` may compute (Lightning's ``WeightAveraging`` copies the weights there).
    """

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        launcher = getattr(trainer.strategy, "launcher", None)
        if getattr(launcher, "_start_method", None) == "fork" and torch.get_num_threads() > 1:
            rank_zero_info(
                f"{type(trainer.strategy).__name__} forked the training processes: each "
                f"computes on 1 CPU thread instead of {torch.get_num_threads()} (OpenMP cannot "
                "run threads again after a fork); from a script, strategy='ddp' keeps them"
            )
            torch.set_num_threads(1)


_GPU_NAMES = {"cuda": "CUDA GPU", "mps": "Apple GPU"}


def named_gpu(accelerator: Any) -> str | None:
    """The GPU an ``accelerator`` named as Lightning names it asks for: ``"cuda"``,
    ``"mps"`` or ``None`` (the CPU, ``"auto"``, an object). Lightning's ``"gpu"`` is a CUDA
    GPU, else an Apple one."""
    if not isinstance(accelerator, str):
        return None
    if accelerator == "gpu":
        has_apple_only = torch.backends.mps.is_available() and not torch.cuda.is_available()
        return "mps" if has_apple_only else "cuda"
    return accelerator if accelerator in _GPU_NAMES else None


def check_accelerator_available(accelerator: Any) -> None:
    """Refuse a GPU ``accelerator`` named as Lightning names it when there is no such GPU.

    Lightning says only "No supported gpu backend found!" when it builds the trainer, which
    names neither ``accelerator`` nor the fix. Accelerator objects and other names are left
    to Lightning (an unknown name gets its list of names).
    """
    gpu = named_gpu(accelerator)
    present = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
    if gpu is not None and not present[gpu]():
        raise ValueError(
            f"accelerator={accelerator!r} but no {_GPU_NAMES[gpu]} is available here; pass "
            "accelerator='cpu', or 'auto' (which takes a GPU when there is one)"
        )


def distributed_trainer_kwargs(
    kwargs: dict[str, Any], *, find_unused_parameters: bool = False
) -> dict[str, Any]:
    """Trainer arguments for several devices: name the DDP strategy Lightning would pick.

    With several ``devices`` and no ``strategy``, Lightning chooses DDP (``"ddp_fork"`` in a
    notebook) by itself, but scvi-tools splits the cells across the processes only when
    the strategy's name says DDP; otherwise every minibatch reaches the module with an extra
    leading dimension and training fails. ``find_unused_parameters`` is for modules with
    parameters a training phase does not use (DDP refuses them otherwise): a DDP strategy
    named without it (``"ddp"``, ``"ddp_spawn"``, ...) becomes its
    ``_find_unused_parameters_true`` twin. Validation runs under ``no_grad`` rather than
    inference mode (``inference_mode=False``): Lightning's gloo backend (CPUs) cannot
    average metrics logged in inference mode. As in scvi-tools, early stopping is off under
    DDP (scvi-tools says so in a warning). Forked processes compute on one CPU thread each
    (:class:`OneThreadPerForkedProcess`). A GPU ``accelerator`` with no such GPU is refused
    first (:func:`check_accelerator_available`).
    """
    check_accelerator_available(kwargs.get("accelerator", "auto"))
    kwargs = dict(kwargs)
    strategy = kwargs.get("strategy", "auto")
    if several_devices(kwargs.get("devices", "auto")):
        # metrics logged in inference mode cannot be averaged across processes by gloo (CPUs)
        kwargs.setdefault("inference_mode", False)
        # first: other callbacks' setup computes too (the EMA callback copies the weights)
        kwargs["callbacks"] = [OneThreadPerForkedProcess(), *(kwargs.get("callbacks") or [])]
        if strategy == "auto":
            from lightning.fabric.utilities.imports import _IS_INTERACTIVE

            strategy = "ddp_fork" if _IS_INTERACTIVE else "ddp"
    if find_unused_parameters and isinstance(strategy, str) and strategy in _DDP_STRATEGIES:
        strategy += "_find_unused_parameters_true"
    if strategy != "auto":
        kwargs["strategy"] = strategy
    return kwargs


def has_validation_set(train_size: float | None) -> bool:
    """Whether scvi-tools holds cells out for validation: ``None`` keeps its default split,
    ``train_size >= 1`` trains on every cell."""
    return train_size is None or train_size < 1.0


def early_stopping_trainer_kwargs(
    kwargs: dict[str, Any],
    *,
    early_stopping: bool,
    patience: int,
    logger: Any = None,
    monitor: str = "validation_loss",
    mode: str = "min",
    train_size: float | None = 0.9,
    n_obs: int | None = None,
) -> dict[str, Any]:
    """Trainer arguments every scneural model trains with.

    ``early_stopping`` on a validation metric checked every epoch, plus the optional extra
    logger (see :func:`build_logger`; it writes under ``default_root_dir`` when ``kwargs``
    name one). Values the caller already put in ``kwargs`` win.
    With ``train_size >= 1`` there is no validation set, so nothing is validated and early
    stopping is off. ``train_size`` and ``kwargs``' ``datasplitter_kwargs`` are checked
    first (:func:`~scneural._validation.check_train_size`,
    :meth:`SingleCellSafeDataSplitter.check_train_kwargs`).
    """
    SingleCellSafeDataSplitter.check_train_kwargs(kwargs.get("datasplitter_kwargs"))
    train_size = None if train_size is None else check_train_size(train_size)
    kwargs = distributed_trainer_kwargs(kwargs)
    if logger is not None:
        kwargs["logger"] = build_logger(logger, kwargs.get("default_root_dir"))
    if not has_validation_set(train_size):
        kwargs["early_stopping"] = False
        return kwargs
    if n_obs is not None:
        fraction = 0.9 if train_size is None else train_size  # in (0, 1): validation
        if n_obs - math.ceil(fraction * n_obs) == 0:
            raise ValueError(
                f"train_size={fraction:g} of {n_obs} cells leaves no cell for validation "
                "(early stopping and the validation metrics need some); pass train_size=1.0 "
                "to train on every cell without validation, or use more cells"
            )
    kwargs["early_stopping"] = early_stopping
    kwargs.setdefault("early_stopping_monitor", monitor)
    kwargs.setdefault("early_stopping_patience", patience)
    kwargs.setdefault("early_stopping_mode", mode)
    kwargs.setdefault("check_val_every_n_epoch", 1)
    return kwargs


def ema_trainer_kwargs(
    kwargs: dict[str, Any], ema_decay: float | None, callback: Callable[[float], Any]
) -> dict[str, Any]:
    """Trainer arguments that train with an exponential moving average (EMA) of the weights.

    After every optimizer step the average moves towards the current weights,
    ``average = ema_decay * average + (1 - ema_decay) * weights``; validation (and so early
    stopping) sees the average, and at the end of training the model keeps it in place of the
    last step's weights. ``callback(ema_decay)`` builds the backend's callback (the model's
    ``_ema_callback``: Lightning's ``WeightAveraging`` for torch); it is added to the caller's
    ``callbacks``. ``None`` leaves ``kwargs`` as they are.
    """
    if ema_decay is None:
        return kwargs
    decay = check_fraction(ema_decay, "ema_decay")
    given = kwargs.get("callbacks") or []
    given = list(given) if isinstance(given, list | tuple) else [given]
    return {**kwargs, "callbacks": [*given, callback(decay)]}
