"""sn.pl: plots return Axes with show=False and read results back from adata."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import scneural as sn


@pytest.fixture
def labelled():
    adata = AnnData(np.zeros((6, 2), dtype=np.float32))
    adata.obs["truth"] = pd.Categorical(["a", "a", "b", "b", "c", "c"])
    adata.obs["pred"] = pd.Categorical(["a", "b", "b", "b", "c", "a"])
    adata.uns["tool"] = {
        "history": {
            "train_loss": np.array([3.0, 2.0, 1.0]),
            "validation_loss": np.array([3.5, 2.5, 2.0]),
            "accuracy_train": np.array([0.5, 0.7, 0.9]),
        }
    }
    adata.uns["phased"] = {
        "history": {
            "pretrain": {"train_loss": np.array([2.0, 1.0])},
            "cluster": {"train_loss": np.array([1.0, 0.5]), "delta_label": np.array([0.1, 0.0])},
        }
    }
    return adata


def test_confusion_matrix_plot(labelled):
    ax = sn.pl.confusion_matrix(labelled, "truth", "pred", show=False)
    image = ax.images[0].get_array()
    np.testing.assert_allclose(np.asarray(image).sum(axis=1), 1.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    plt.close("all")


def test_confusion_matrix_counts_on_given_axes(labelled):
    fig, ax = plt.subplots()
    out = sn.pl.confusion_matrix(labelled, "truth", "pred", normalize=None, ax=ax, show=False)
    assert out is ax
    assert np.asarray(ax.images[0].get_array()).sum() == 6
    plt.close(fig)


def test_training_history_groups_train_and_validation(labelled):
    axes = sn.pl.training_history(labelled, "tool", show=False)
    titles = sorted(ax.get_title() for ax in axes)
    assert titles == ["accuracy", "loss"]
    loss_ax = next(ax for ax in axes if ax.get_title() == "loss")
    assert len(loss_ax.get_lines()) == 2
    plt.close("all")


def test_training_history_phases(labelled):
    axes = sn.pl.training_history(labelled, "phased", show=False)
    assert {ax.get_title() for ax in axes} == {
        "pretrain loss",
        "cluster loss",
        "cluster delta_label",
    }
    axes = sn.pl.training_history(labelled, "phased", phase="pretrain", show=False)
    assert [ax.get_title() for ax in axes] == ["pretrain loss"]
    plt.close("all")


def test_training_history_on_given_axes(labelled):
    _, ax = plt.subplots()
    out = sn.pl.training_history(labelled, "phased", phase="pretrain", ax=ax, show=False)
    assert out == [ax] and ax.get_title() == "pretrain loss"
    _, grid = plt.subplots(1, 2)
    out = sn.pl.training_history(labelled, "tool", ax=grid, show=False)
    assert out == list(grid)
    with pytest.raises(ValueError, match="ax= holds 1 Axes, but this plot has 2 panels"):
        sn.pl.training_history(labelled, "tool", ax=ax, show=False)
    plt.close("all")


def test_training_history_unknown_phase(labelled):
    with pytest.raises(ValueError, match=r"phase='dec' .* one of \['pretrain', 'cluster'\]"):
        sn.pl.training_history(labelled, "phased", phase="dec", show=False)
    with pytest.raises(ValueError, match="trains in one phase"):
        sn.pl.training_history(labelled, "tool", phase="pretrain", show=False)


def test_plot_errors(labelled):
    with pytest.raises(KeyError, match=r"run a tool \(e.g. sn.tl.classify\) with key_added="):
        sn.pl.training_history(labelled, "missing", show=False)
    labelled.uns["fixed"] = {"history": {}}
    with pytest.raises(ValueError, match="its model trained nothing .*torchvision"):
        sn.pl.training_history(labelled, "fixed", show=False)
    with pytest.raises(KeyError, match="true_key='nope'"):
        sn.pl.confusion_matrix(labelled, "nope", "pred", show=False)
    with pytest.raises(ValueError, match=r"no metric .* it holds \['accuracy', 'loss'\]"):
        sn.pl.training_history(labelled, "tool", metrics=["f1"], show=False)
    with pytest.raises(ValueError, match=r"holds \['delta_label', 'loss'\]"):  # every phase
        sn.pl.training_history(labelled, "phased", metrics=["f1"], show=False)


def test_training_history_metrics_one_name_and_tagged_names(labelled):
    adata = labelled
    adata.uns["dc"] = {
        "history": {
            "train_loss": np.array([2.0, 1.0]),
            "zinb_loss_train": np.array([2.0, 1.0]),
            "label_change": np.array([0.1, 0.0]),
        }
    }
    for metrics in ("loss", ["loss"]):
        axes = sn.pl.training_history(adata, "dc", metrics=metrics, show=False)
        assert [a.get_title() for a in axes] == ["loss", "zinb_loss"]
    plt.close("all")


def test_label_order_follows_categories_and_numbers(labelled):
    adata = labelled
    adata.obs["truth"] = adata.obs["truth"].cat.reorder_categories(["c", "b", "a"])
    ax = sn.pl.confusion_matrix(adata, "truth", "pred", show=False)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "b", "a"]
    frame = sn.metrics.confusion_matrix([2, 10, 1], [2, 10, 1])
    assert list(frame.index) == ["1", "2", "10"]
    plt.close("all")


def test_reg_mean_takes_gene_arrays():
    rng = np.random.default_rng(0)
    adata = AnnData(rng.normal(size=(20, 5)).astype(np.float32) + 2)
    adata.var_names = [f"g{i}" for i in range(5)]
    adata.obs["c"] = ["real"] * 10 + ["predicted"] * 10
    genes = adata.var_names[:3]
    ax = sn.pl.reg_mean(
        adata, condition_key="c", x="real", top_genes=genes, gene_list=np.asarray(genes), show=False
    )
    assert {t.get_text() for t in ax.texts} >= set(genes)  # the chosen genes are labelled
    plt.close("all")


def test_panel_titles_clear_the_labels_of_the_row_above(labelled):
    adata = labelled
    adata.uns["many"] = {
        "history": {f"metric{i}_train": np.array([2.0, 1.0, 0.5]) for i in range(6)}
    }
    axes = sn.pl.training_history(adata, "many", show=False)
    assert len(axes) == 6
    figure = axes[0].figure
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    label_above = axes[0].xaxis.label.get_window_extent(renderer)
    title_below = axes[3].title.get_window_extent(renderer)
    assert label_above.y0 > title_below.y1  # display coordinates grow upwards
    plt.close("all")
