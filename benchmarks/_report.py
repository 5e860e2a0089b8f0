"""Markdown tables printed by the benchmark scripts (pandas' ``to_markdown`` needs tabulate,
which is not a dependency here)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table: floats with 3 decimals, missing values blank."""

    def cell(value) -> str:
        if value is pd.NA or value is None:
            return ""
        if isinstance(value, float | np.floating):
            return "" if np.isnan(value) else f"{value:.3f}"
        return str(value)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * frame.shape[1]
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])
