"""Checks of the arguments a tool passes on to training, before any work is done.

A tool's ``**train_kwargs`` reach the model's ``train``, scvi-tools' ``Trainer`` and
Lightning's ``Trainer``. A misspelt argument (``max_epoch=``, or ``n_hiden=`` for the
tool's own ``n_hidden``) used to fail only there, as "Trainer.__init__() got an unexpected
keyword argument", after the data were checked and the model built; with ``model=`` it was
not used at all, and silently accepted.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from scneural._utils import class_keyword_names, keyword_names, with_suggestion


def train_argument_names(model_cls: type) -> frozenset[str]:
    """Every argument name ``model_cls().train(...)`` passes on somewhere: the ``train``
    methods along its class hierarchy (its own and scvi-tools'), scvi-tools' ``Trainer`` and
    Lightning's ``Trainer``."""
    from lightning.pytorch import Trainer as LightningTrainer
    from scvi.train import Trainer

    names = keyword_names(Trainer.__init__) | keyword_names(LightningTrainer.__init__)
    return frozenset(names | class_keyword_names(model_cls, "train"))


def check_train_kwargs(tool: Callable, train_kwargs: Mapping[str, Any], model_cls: type) -> None:
    """Refuse ``train_kwargs`` that no training step takes, naming the closest known ones.

    Parameters
    ----------
    tool
        The tool (its own arguments are suggested too: ``n_hiden`` -> ``n_hidden``).
    train_kwargs
        The tool's extra keyword arguments.
    model_cls
        The model class the tool trains.

    Raises
    ------
    TypeError
        If some names are unknown.
    """
    known = train_argument_names(model_cls)
    unknown = [name for name in train_kwargs if name not in known]
    if unknown:
        candidates = set(known) | keyword_names(tool)
        raise TypeError(
            f"{tool.__name__} got unexpected argument{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(with_suggestion(name, candidates) for name in unknown)}; extra arguments "
            f"go to {model_cls.__name__}.train and Lightning's Trainer"
        )


#: trainer options that change only what is shown, accepted with ``model=`` too (a user's
#: shared ``enable_progress_bar=False`` should not fail a reuse call)
DISPLAY_ONLY = frozenset(
    {"enable_progress_bar", "progress_bar_refresh_rate", "simple_progress_bar"}
)


def _same(value: Any, default: Any) -> bool:
    """Whether an argument still holds its default (a list equals the default tuple)."""
    if isinstance(value, list | tuple) and isinstance(default, list | tuple):
        return tuple(value) == tuple(default)
    try:
        return bool(value == default)
    except (TypeError, ValueError):
        return False


def check_reuse_arguments(tool: Callable, train_kwargs: Mapping[str, Any], **given: Any) -> None:
    """Refuse arguments that only build or train a new model, for a tool given ``model=``.

    A trained model is applied as it is, so such arguments would have no effect, yet they
    would be recorded in ``uns[key]["params"]`` as if they had one.

    Parameters
    ----------
    tool
        The tool (its signature holds the defaults).
    train_kwargs
        The tool's extra keyword arguments (all of them go to training; those in
        :data:`DISPLAY_ONLY` are let through).
    **given
        The tool's own arguments that build or train a new model, as passed.

    Raises
    ------
    ValueError
        If any of them is not at its default, or ``train_kwargs`` is not empty.
    """
    defaults = inspect.signature(tool).parameters
    changed = [
        f"{name}={value!r}"
        for name, value in given.items()
        if not _same(value, defaults[name].default)
    ]
    changed += [
        f"{name}={value!r}" for name, value in train_kwargs.items() if name not in DISPLAY_ONLY
    ]
    if changed:
        raise ValueError(
            f"{tool.__name__}(model=...) applies a trained model as it is: "
            f"{', '.join(changed)} only build or train a new model and would have no "
            "effect; drop them, or leave model= out to train a new model"
        )


def check_tool_arguments(
    tool: Callable, model: Any, model_cls: type, train_kwargs: Mapping[str, Any], **given: Any
) -> None:
    """A tool's arguments of training, before any work: :func:`check_train_kwargs` when it
    trains a ``model_cls``, :func:`check_reuse_arguments` (``given``) with ``model=``."""
    if model is None:
        check_train_kwargs(tool, train_kwargs, model_cls)
    else:
        check_reuse_arguments(tool, train_kwargs, **given)
