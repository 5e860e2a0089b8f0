"""The command-line interface and the demo."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from scneural.cli import _demo, app


def test_version_option():
    import scneural

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"scneural {scneural.__version__}"


def test_datasets_command():
    result = CliRunner().invoke(app, ["datasets"])
    assert result.exit_code == 0
    assert "worm_neuron_cell" in result.output


def test_datasets_command_flags_a_data_dir_that_is_not_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("SCNEURAL_DATA_DIR", str(tmp_path / "shraed"))
    result = CliRunner().invoke(app, ["datasets"])
    assert result.exit_code == 0
    assert "warning: $SCNEURAL_DATA_DIR is" in result.stderr
    assert "shraed" in result.stderr and "not a directory" in result.stderr
    assert "worm_neuron_cell" in result.stdout
    monkeypatch.setenv("SCNEURAL_DATA_DIR", str(tmp_path))  # exists: no warning
    assert "warning" not in CliRunner().invoke(app, ["datasets"]).stderr


def test_demo_classify_offline(tmp_path, monkeypatch):
    # pretend no real data is present: the demo must still run on the bundled set
    monkeypatch.setattr(_demo, "_has", lambda name: False)
    result = CliRunner().invoke(
        app, ["demo", "--output", str(tmp_path), "--tools", "classify", "--max-epochs", "3"]
    )
    assert result.exit_code == 0, result.output
    names = {p.name for p in tmp_path.iterdir()}
    assert {
        "classify_pbmc68k_reduced_umap.png",
        "classify_pbmc68k_reduced_confusion.png",
        "classify_pbmc68k_reduced_history.png",
        "classify_pbmc68k_reduced_query.h5ad",
    } <= names
    import anndata as ad

    query = ad.read_h5ad(tmp_path / "classify_pbmc68k_reduced_query.h5ad")
    assert isinstance(query.obsm["classify_proba"], pd.DataFrame)


def test_demo_unknown_tool(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--output", str(tmp_path), "--tools", "nope"])
    assert result.exit_code != 0


def test_demo_tools_list_tolerates_spaces(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(_demo, "run_demo", lambda output, tools, max_epochs: seen.update(t=tools))
    result = CliRunner().invoke(
        app, ["demo", "--output", str(tmp_path), "--tools", "classify, perturb ,"]
    )
    assert result.exit_code == 0, result.output
    assert seen["t"] == ["classify", "perturb"]


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "scneural", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout and "datasets" in done.stdout


def test_demo_bad_options_are_usage_errors(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(_demo, "run_demo", lambda *a, **k: ran.append(a))
    out = tmp_path / "out"
    for args in (["--tools", "nope"], ["--tools", ""], ["--max-epochs", "0"]):
        result = CliRunner().invoke(app, ["demo", "--output", str(out), *args])
        assert result.exit_code == 2, (args, result.output)
    assert not ran and not out.exists()
