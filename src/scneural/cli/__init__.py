"""Command-line interface: ``scneural demo``, ``scneural datasets``."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="scneural: deep learning tools for single-cell data.", no_args_is_help=True)


@app.command()
def demo(
    output: Path = typer.Option(Path("demo_output"), help="Folder for the .h5ad and PNG outputs."),
    tools: str = typer.Option(
        "all",
        help="Comma-separated tools to run (classify, deep_cluster, perturb, image_features).",
    ),
    max_epochs: int | None = typer.Option(None, help="Cap the training epochs (for a quick run)."),
) -> None:
    """Run every tool end to end on real data and write results and figures to OUTPUT."""
    from ._demo import run_demo

    names = [name.strip() for name in tools.split(",") if name.strip()]
    run_demo(output, tools=None if names == ["all"] else names, max_epochs=max_epochs)


@app.command()
def datasets() -> None:
    """List the known data sets and where they are found."""
    from scneural.datasets import available

    typer.echo(available().to_string())


def main() -> None:  # pragma: no cover
    app()
