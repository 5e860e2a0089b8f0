"""Execute notebooks in place with their outputs (``make notebooks``).

Usage: python benchmarks/run_notebooks.py notebooks/classify.ipynb [...]
Runs each notebook with this interpreter's kernel, from the notebooks/ folder, and
saves it with its outputs; a failing cell stops with the error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run(path: Path, timeout: int = 3600) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    nbformat.write(notebook, path)
    print(f"executed {path}")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        run(Path(name))
