"""Every public docstring is filled: no ``{placeholder}`` of :func:`doc_params` left over
(``f"X_{key_added}"`` in a Returns section is text, not a placeholder); each tool's
Returns section names what the tool writes, checked on tiny data (a few seconds); and
every public function and model method has numpydoc Parameters and Returns sections; and
the relative links of the README and docs/ resolve."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import scanpy as sc

import scneural as sn
from conftest import synthetic_section
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


# ---------------------------------------------------------------- numpydoc sections
SECTION = re.compile(r"^([ \t]*)([A-Z]\w*(?: \w+)*)\n\1-{3,}[ \t]*\n", re.M)


def _sections(doc: str) -> dict[str, str]:
    """The numpydoc sections of a docstring: title -> its text."""
    doc = inspect.cleandoc(doc)
    heads = list(SECTION.finditer(doc))
    return {
        head.group(2): doc[head.end() : heads[i + 1].start() if i + 1 < len(heads) else None]
        for i, head in enumerate(heads)
    }


# ---------------------------------------------------------------- Returns vs what is written
# ``obs[key_added]``, ``obsm[f"X_{key_added}"]``, ... as the docstring writes them
SLOT = re.compile(r"``(obs|obsm)\[(f?\"[^\"]*\"|key_added)\]``")


def _returns(func) -> str:
    returns = _sections(func.__doc__ or "").get("Returns")
    assert returns is not None, f"{func.__name__} has no Returns section"
    return returns


def _writes(func) -> str:
    """The part of the Returns section about what is written into ``adata`` (the part
    before it describes the returned object, e.g. perturb's predicted AnnData)."""
    returns = _returns(func)
    assert "Writes" in returns, f"{func.__name__}'s Returns does not say what it writes"
    return returns[returns.index("Writes") :]


def _documented_slots(returns: str, key: str) -> set[tuple[str, str]]:
    """The (slot, name) pairs a Returns section names, its key_added set to ``key``."""
    slots = set()
    for slot, name in SLOT.findall(returns):
        name = key if name == "key_added" else name.lstrip("f").strip('"')
        slots.add((slot, name.replace("{key_added}", key)))
    return slots


def _written(before, after) -> set[tuple[str, str]]:
    return {
        (slot, name)
        for slot in ("obs", "obsm")
        for name in set(getattr(after, slot).keys()) - set(getattr(before, slot).keys())
    }


def _run_tool(name: str, key: str):
    """Run a tool with tiny settings; returns (adata before, adata after, function)."""
    quiet = {"enable_progress_bar": False}
    if name == "classify":
        adata = sn.datasets.synthetic_counts(60, 30)
        sc.pp.normalize_total(adata)
        sc.pp.log1p(adata)
        before = adata.copy()
        sn.tl.classify(adata, "group", key_added=key, max_epochs=1, n_hidden=(8,), **quiet)
    elif name == "deep_cluster":
        adata = sn.datasets.synthetic_counts(60, 30)
        before = adata.copy()
        sn.tl.deep_cluster(
            adata,
            3,
            key_added=key,
            labels_key="group",
            n_top_genes=None,
            n_hidden=(8,),
            n_latent=4,
            pretrain_epochs=1,
            max_epochs=1,
            **quiet,
        )
    elif name == "perturb":
        adata = sn.datasets.synthetic_perturbation(80, 30)
        held_out = (adata.obs["cell_type"] == "t0") & (adata.obs["condition"] == "stimulated")
        adata = adata[~held_out.to_numpy()].copy()
        sc.pp.normalize_total(adata)
        sc.pp.log1p(adata)
        before = adata.copy()
        sn.tl.perturb(
            adata,
            condition_key="condition",
            control="control",
            perturbed="stimulated",
            cell_type_key="cell_type",
            predict="t0",
            key_added=key,
            max_epochs=1,
            n_hidden=8,
            n_latent=4,
            **quiet,
        )
    else:
        adata = synthetic_section()
        before = adata.copy()
        sn.tl.image_features(adata, key_added=key, weights=None, input_size=32, n_comps=3)
    return before, adata, getattr(sn.tl, name)


@pytest.mark.parametrize("name", ["classify", "deep_cluster", "perturb", "image_features"])
def test_returns_section_names_what_the_tool_writes(name):
    """Every obs/obsm key and top-level uns[key_added] entry a tool writes is in its Returns
    section, and every obs/obsm key documented there is written (a custom key_added, so the
    key patterns are checked too)."""
    key = "mykey"
    before, after, func = _run_tool(name, key)
    returns = _writes(func)
    documented = _documented_slots(returns, key)
    written = _written(before, after)
    assert written == documented, f"{name}: written {written}, documented {documented}"
    assert set(after.uns) - set(before.uns) == {key}
    named = set(re.findall(r"``(\w+)``", returns))
    undocumented = set(after.uns[key]) - named
    assert not undocumented, f"{name} writes uns[{key!r}] entries its Returns omits: {undocumented}"


def test_image_gene_association_returns_names_what_it_writes():
    key = "mykey"
    _, adata, _ = _run_tool("image_features", key)
    before = set(adata.uns[key])
    sn.tl.image_gene_association(adata, key=key)
    returns = _returns(sn.tl.image_gene_association)
    assert set(adata.uns[key]) - before == {"associations"}
    assert '``uns[key]["associations"]``' in returns
    assert "association" in adata.uns[key]["params"]
    assert '``uns[key]["params"]["association"]``' in returns


def test_readme_table_lists_the_documented_keys():
    """The README's table of what each tool writes agrees with the tools' Returns sections
    (which the test above checks against the tools themselves), at the default key_added."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    rows = dict(re.findall(r"^\| `sn\.tl\.(\w+)` \|.*\| (.*) \|$", readme, re.MULTILINE))
    for name in ("classify", "deep_cluster", "perturb", "image_features"):
        func = getattr(sn.tl, name)
        default = inspect.signature(func).parameters["key_added"].default
        in_readme = set(re.findall(r'`(obs|obsm)\["([^"]+)"\]`', rows[name]))
        assert in_readme == _documented_slots(_writes(func), default), name
        assert f'`uns["{default}"]`' in rows[name], name


# ---------------------------------------------------------------- Parameters and Returns
def _documented_params(section: str) -> set[str]:
    """Names of a Parameters section's entries: unindented lines ``name``, ``a, b`` or
    ``name : type`` (descriptions are indented below them)."""
    names = set()
    for line in section.splitlines():
        if line and not line[0].isspace():
            head = line.split(" : ")[0]
            names.update(name.strip() for name in head.split(","))
    return names


def _public_callables():
    """Every public function of the tools, plots, metrics and data sets, and every public
    method scneural defines on its models (methods inherited from scvi-tools and those of
    the scvi-tools ``*Module`` classes are documented there)."""
    for module in (sn.metrics, sn.datasets, sn.tl, sn.pl):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
    classes = [getattr(sn.models, n) for n in sn.models.__all__ if not n.startswith("Jax")]
    try:
        from scneural.models._jax import require_jax

        require_jax()
        classes += [getattr(sn.models, n) for n in sn.models.__all__ if n.startswith("Jax")]
    except ImportError:  # the JAX models' own methods are then checked where JAX is
        from scneural.models._jax import JaxModelMixin

        classes.append(JaxModelMixin)
    classes += [ClassifierMixin, DeepClusterMixin, ScGenMixin]
    seen = set()
    for cls in classes:
        if cls.__name__.endswith("Module"):
            continue
        for klass in cls.__mro__:
            if not klass.__module__.startswith("scneural."):
                continue
            for name, attribute in vars(klass).items():
                func = getattr(attribute, "__func__", attribute)  # class and static methods
                if name.startswith("_") or not inspect.isfunction(func) or func in seen:
                    continue
                seen.add(func)
                yield f"{klass.__qualname__}.{name}", func


@pytest.mark.parametrize(
    ("name", "func"), [pytest.param(name, func, id=name) for name, func in _public_callables()]
)
def test_numpydoc_parameters_and_returns(name, func):
    """A Parameters section naming every argument (``*args``/``**kwargs`` as any starred
    entry) and a Returns or Yields section unless the function is annotated ``-> None``."""
    sections = _sections(func.__doc__ or "")
    signature = inspect.signature(func)
    params = [p for p in signature.parameters.values() if p.name not in ("self", "cls")]
    if params:
        assert "Parameters" in sections, f"{name} has no Parameters section"
        documented = _documented_params(sections["Parameters"])
        missing = []
        for p in params:
            if p.kind is p.VAR_KEYWORD:
                found = any(d.startswith("**") for d in documented)
            elif p.kind is p.VAR_POSITIONAL:
                found = any(d.startswith("*") and not d.startswith("**") for d in documented)
            else:
                found = p.name in documented
            if not found:
                missing.append(p.name)
        assert not missing, f"{name}'s Parameters section lacks {missing}"
    if signature.return_annotation not in (None, "None"):
        assert {"Returns", "Yields"} & set(sections), f"{name} has no Returns section"


ROOT = Path(__file__).resolve().parents[1]
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (outside code blocks): lower case,
    punctuation but ``-`` and ``_`` dropped, spaces turned into ``-``."""
    anchors, in_code = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (heading := re.match(r"#{1,6} (.+)", line)):
            anchors.add(re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize(
    "document",
    ["README.md", *(p.relative_to(ROOT).as_posix() for p in sorted(ROOT.glob("docs/*.md")))],
)
def test_relative_links_in_the_docs_resolve(document):
    """Each relative link of the README and docs/ names a file of the repository, and its
    #anchor a heading there (the benchmark logs moved between pages once)."""
    source = ROOT / document
    broken = []
    for target in MARKDOWN_LINK.findall(source.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (source.parent / path).resolve() if path else source
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md":
            if anchor not in _heading_anchors(linked.read_text()):
                broken.append(f"{target} (no such heading)")
    assert not broken, f"{document}: {broken}"
