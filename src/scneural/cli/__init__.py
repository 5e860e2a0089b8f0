"""Command-line interface: ``scneural demo``, ``scneural datasets``."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

app = typer.Typer(help="scneural: deep learning tools for single-cell data.", no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        from scneural import __version__

        typer.echo(f"scneural {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """scneural: deep learning tools for single-cell data."""


@app.command()
def demo(
    output: Path = typer.Option(Path("demo_output"), help="Folder for the .h5ad and PNG outputs."),
    tools: str = typer.Option(
        "all",
        help="Comma-separated tools to run (classify, deep_cluster, perturb, image_features).",
    ),
    max_epochs: int | None = typer.Option(
        None, min=1, help="Cap the training epochs (for a quick run)."
    ),
) -> None:
    """Run every tool end to end on real data and write results and figures to --output."""
    from ._demo import DEMOS, run_demo

    names = list(dict.fromkeys(name.strip() for name in tools.split(",") if name.strip()))
    unknown = [name for name in names if name != "all" and name not in DEMOS]
    if not names or unknown:
        raise typer.BadParameter(
            f"unknown tools {unknown}; choose from {sorted(DEMOS)} or 'all'"
            if unknown
            else f"name at least one tool: {sorted(DEMOS)} or 'all'",
            param_hint="--tools",
        )
    run_demo(output, tools=None if "all" in names else names, max_epochs=max_epochs)


@app.command()
def datasets() -> None:
    """List the known data sets and where they are found."""
    from scneural.datasets import available

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = available()
    for warning in caught:  # e.g. a mistyped $SCNEURAL_DATA_DIR
        typer.echo(f"warning: {warning.message}", err=True)
    typer.echo(table.to_string())


def main() -> None:  # pragma: no cover
    app()
