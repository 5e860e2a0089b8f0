"""Training curves read back from ``adata.uns[key]['history']``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from anndata import AnnData

from scneural._docs import doc_params

from ._utils import finish, get_uns, panel_axes


def _metric_groups(history: dict, metrics: Sequence[str] | None) -> dict[str, list[str]]:
    """Group history entries by metric name (``train_loss``/``validation_loss`` together)."""
    metrics = [metrics] if isinstance(metrics, str) else metrics  # one name, not its letters
    groups: dict[str, list[str]] = {}
    for name in history:
        base = name
        for tag in ("train_", "validation_", "_train", "_validation", "_epoch"):
            base = base.replace(tag, "")
        if metrics is None or any(
            n.startswith(x) or n.endswith(x) for x in metrics for n in (name, base)
        ):
            groups.setdefault(base, []).append(name)
    return groups


@doc_params()
def training_history(
    adata: AnnData,
    key: str,
    *,
    metrics: Sequence[str] | None = None,
    phase: str | None = None,
    ax: Any = None,
    show: bool | None = None,
) -> Any:
    """Per-epoch training curves of a tool run, one panel per metric (train and validation).

    Parameters
    ----------
    adata
        AnnData a tool wrote ``uns[key]['history']`` into.
    key
        The tool's ``key_added``.
    metrics
        Only metrics whose names, with or without their ``train``/``validation`` tags, start
        or end with one of these (one name or a list, e.g. ``["loss", "accuracy"]``).
    phase
        For tools that train in phases (``deep_cluster``: ``"pretrain"``, ``"cluster"``),
        which phase to plot; ``None`` plots the single or every phase.
    ax
        Axes to draw on: one per panel (a sequence or array), or one Axes for a single
        panel; a new figure by default.
    {show}

    Returns
    -------
    The list of matplotlib Axes when the figure is not shown (see ``show``), else ``None``.
    """
    history = get_uns(adata, key).get("history")
    if history is None or len(history) == 0:
        raise ValueError(
            f"adata.uns[{key!r}] holds no training history: its model trained nothing "
            "(image_features with a torchvision backbone's fixed weights) or was saved "
            "without its history"
        )
    nested = all(isinstance(v, dict) for v in history.values())
    if phase is None:
        phases = dict(history) if nested else {"": history}
    elif nested and phase in history:
        phases = {phase: history[phase]}
    else:
        known = f"one of {list(history)}" if nested else "None: this tool trains in one phase"
        raise ValueError(f"phase={phase!r} is not in adata.uns[{key!r}]['history']; pass {known}")
    panels = []
    for phase_name, phase_history in phases.items():
        for base, names in _metric_groups(phase_history, metrics).items():
            panels.append((f"{phase_name} {base}".strip(), {n: phase_history[n] for n in names}))
    if not panels:
        held = sorted({base for curves in phases.values() for base in _metric_groups(curves, None)})
        raise ValueError(
            f"no metric of adata.uns[{key!r}]['history'] matches metrics={metrics!r}; it "
            f"holds {held} (each with its train/validation curves)"
        )
    axes = panel_axes(len(panels), ax)
    for panel, (title, curves) in zip(axes, panels):
        for name, values in curves.items():
            values = np.asarray(values, dtype=float)
            panel.plot(
                np.arange(1, values.size + 1),
                values,
                label=name,
                marker="." if values.size < 30 else None,
            )
        panel.set_title(title)
        panel.set_xlabel("epoch")
        panel.legend(fontsize=7)
    return finish(axes, show)
