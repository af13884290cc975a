"""
Sphinx configuration: the site is built from docs/*.md (MyST) and the docstrings.

`make docs` builds it with ``-W --keep-going`` and nitpicky references, so a
broken link, a reference to an undocumented name, or a public name without a
docstring fails the build. No network is used: there is no intersphinx.
"""

from __future__ import annotations

import inspect
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

import tunnypy

project = "tunnypy"
copyright = "the tunnypy authors"
release = tunnypy.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "tunnypy"
html_static_path: list[str] = []

# Strict references: every cross-reference must resolve. With no intersphinx
# (the build must not touch the network), the standard library's names cannot
# resolve, so those modules' names alone are let through (builtins such as
# int and TimeoutError Sphinx lets through itself); see _resolve_private_path
# for the names tunnypy defines in private modules.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(abc|asyncio|collections\.abc|concurrent\.futures|contextvars|typing)\..+"),
    (r"py:.*", r"tunnypy\._\w+\.(P|R|T|K|P_contra|R_co)"),  # type variables
    (r"py:.*", r"prometheus_client\..+"),  # tunnypy.contrib.prometheus's signatures
    (r"py:.*", r"distributed\..+"),  # tunnypy.contrib.dask's signatures
]

myst_heading_anchors = 3
myst_enable_extensions = ["deflist"]
suppress_warnings = ["myst.header"]  # pages start at the level GitHub renders best

autodoc_default_options = {
    "members": True,
    "undoc-members": True,  # an undocumented member appears, and fails _require_docstring
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_inherit_docstrings = False  # an override must say what it does itself
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

log = logging.getLogger("tunnypy.docs")


def _require_docstring(  # noqa: PLR0917 - the signature of a Sphinx event
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    """A public name documented on the site must have a docstring of its own."""
    short = name.rpartition(".")[2]
    if short.startswith("_") and short not in ("__version__",):
        return
    if what == "class" and short == "__init__":
        return
    text = "\n".join(lines).strip()
    # A variable without a doc comment shows its type's docstring (str's, for one).
    borrowed = what in ("data", "attribute") and text == inspect.getdoc(type(obj))
    if not text or borrowed:
        log.warning("%s %s has no docstring", what, name, type="tunnypy", subtype="docstring")


def _drop_protocol_signature(  # noqa: PLR0917 - the signature of a Sphinx event
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    """A Protocol is never called: show no ``(*args, **kwargs)`` for it."""
    if what == "class" and signature == "(*args, **kwargs)":
        return "", return_annotation
    return None


def _check_all_documented(app: Sphinx, env: BuildEnvironment) -> None:
    """Every name in tunnypy.__all__ must be described on the site."""
    documented = env.get_domain("py").objects  # type: ignore[attr-defined]
    for name in tunnypy.__all__:
        if f"tunnypy.{name}" not in documented:
            log.warning(
                "tunnypy.%s is in tunnypy.__all__ but not in the API reference (docs/api.md)",
                name,
                type="tunnypy",
                subtype="undocumented",
            )


def _resolve_private_path(
    app: Sphinx, env: BuildEnvironment, node: Any, contnode: nodes.Element
) -> nodes.Element | None:
    """
    Send ``tunnypy._pool.Pool`` (how an annotation names it) to ``tunnypy.Pool``.

    Only names re-exported in ``tunnypy.__all__`` are redirected; any other
    private name stays unresolved and fails the build.
    """
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("tunnypy._"):
        return None
    public = target.rpartition(".")[2]
    if public not in tunnypy.__all__:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env,
        node["refdoc"],
        app.builder,
        node["reftype"],
        f"tunnypy.{public}",
        node,
        contnode,
    )


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", _require_docstring)
    app.connect("autodoc-process-signature", _drop_protocol_signature)
    app.connect("env-check-consistency", _check_all_documented)
    app.connect("missing-reference", _resolve_private_path)
    return {"parallel_read_safe": True}
