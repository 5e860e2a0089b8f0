"""Every public docstring is filled: no ``{placeholder}`` of :func:`doc_params` left over
(``f"X_{key_added}"`` in a Returns section is text, not a placeholder)."""

from __future__ import annotations

import inspect
import re

import pytest

import scneural as sn
from scneural._docs import DOC_PARAMS
from scneural.models.classifier._model import ClassifierMixin
from scneural.models.deep_cluster._model import DeepClusterMixin
from scneural.models.scgen._model import ScGenMixin

NAMES = sorted({*DOC_PARAMS, "model_params"})
# a placeholder stands on its own line, where a parameter's entry goes
PLACEHOLDER = re.compile(r"^\s*\{(" + "|".join(NAMES) + r")\}\s*$", re.MULTILINE)


def _public():
    for module in (sn.tl, sn.pl, sn.metrics, sn.models, sn.datasets):
        for name in getattr(module, "__all__", dir(module)):
            obj = getattr(module, name, None)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
    for mixin in (ClassifierMixin, DeepClusterMixin, ScGenMixin):
        yield mixin.__name__, mixin


@pytest.mark.parametrize(("name", "obj"), list(_public()), ids=lambda v: str(v))
def test_docstring_placeholders_are_filled(name, obj):
    left = PLACEHOLDER.findall(obj.__doc__ or "")
    assert not left, f"{name} docstring keeps {left}: doc_params did not fill it"
