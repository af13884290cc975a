"""
The API reference cannot drift from the code.

The reference (docs/api.md, built by ``make docs``) is generated from the
docstrings, so every public name needs one of its own; and the strict build
fails on the faults that would let it drift: a public name without a
docstring, a name of ``tunnypy.__all__`` missing from the page, and a broken
reference (in a docstring, or a link between pages).
"""

from __future__ import annotations

import ast
import inspect
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

import tunnypy

ROOT = Path(__file__).resolve().parent.parent
API_PAGE = ROOT / "docs" / "api.md"
NOT_ON_API_PAGE = {"tunnypy.probe": "the CLI, documented in docs/how-many-threads.md"}
STRICT = ["-E", "-q", "-W", "--keep-going", "-b", "dummy"]
"""The options of ``make docs``, with a builder that resolves every reference but writes nothing."""
BUILD_TIMEOUT = 50.0
"""Seconds the strict build of a copy may take; it takes a few."""


def public_members(cls: type) -> dict[str, object]:
    """The public methods and properties *cls* defines itself (not inherited)."""
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("_")
        and (callable(value) or isinstance(value, (property, classmethod, staticmethod)))
    }


def own_doc(value: object) -> str | None:
    """The docstring *value* has itself (not one inherited from its type)."""
    if isinstance(value, (classmethod, staticmethod)):
        value = value.__func__
    doc = value.__doc__  # a class's and a function's are never inherited
    return doc.strip() if doc else None


def attribute_docs(module: str) -> dict[tuple[str, str], list[str]]:
    """The doc comments (``#:``) and docstrings of a module's variables, as Sphinx reads them."""
    analyzer = pytest.importorskip("sphinx.pycode").ModuleAnalyzer.for_module(module)
    docs: dict[tuple[str, str], list[str]] = analyzer.find_attr_docs()
    return docs


class TestPublicDocstrings:
    @pytest.mark.parametrize("name", sorted(set(tunnypy.__all__) - {"__version__"}))
    def test_public_name(self, name: str) -> None:
        """Every class and function in tunnypy.__all__ has a docstring of its own."""
        assert own_doc(getattr(tunnypy, name)), f"tunnypy.{name} has no docstring"

    @pytest.mark.parametrize(
        "name", sorted(n for n in tunnypy.__all__ if inspect.isclass(getattr(tunnypy, n)))
    )
    def test_public_methods(self, name: str) -> None:
        """Every public method and property of a public class has a docstring of its own."""
        cls = getattr(tunnypy, name)
        missing = [m for m, value in public_members(cls).items() if not own_doc(value)]
        assert missing == [], f"tunnypy.{name}: no docstring for {missing}"

    def test_pool_stats_fields(self) -> None:
        """Every field of PoolStats has a docstring (the string after it)."""
        docs = attribute_docs(tunnypy.PoolStats.__module__)
        fields = [field.name for field in attrs.fields(tunnypy.PoolStats)]
        missing = [f for f in fields if not docs.get(("PoolStats", f))]
        assert fields
        assert missing == []

    def test_version(self) -> None:
        """__version__ has a doc comment."""
        assert attribute_docs("tunnypy").get(("", "__version__"))

    def test_public_modules_on_api_page(self) -> None:
        """Every public module (tunnypy.exceptions, tunnypy.contrib.*) is on the API page."""
        page = API_PAGE.read_text(encoding="utf-8")
        modules = [
            info.name
            for info in pkgutil.walk_packages(tunnypy.__path__, "tunnypy.")
            if not any(part.startswith("_") for part in info.name.split("."))
            and not any(info.name.startswith(skip) for skip in NOT_ON_API_PAGE)
        ]
        assert "tunnypy.exceptions" in modules
        missing = [m for m in modules if f"automodule:: {m}" not in page]
        assert missing == []


def _slug(heading: str) -> str:
    """The anchor GitHub (and the site, with myst_heading_anchors) gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


class TestReadmeLinks:
    def test_links_resolve(self) -> None:
        """The README (not part of the site) links only to files and headings that exist."""
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        links = re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", readme)
        local = [(path, anchor) for path, anchor in links if "://" not in path]
        assert any(anchor for _, anchor in local)  # the pattern finds anchors
        broken = []
        for path, anchor in local:
            target = ROOT / path
            if not target.exists():
                broken.append(path)
            elif anchor:
                headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{path}#{anchor}")
        assert broken == []


def _remove_docstring(path: Path, qualname: str) -> None:
    """Delete the docstring of the function ``Class.name`` (or ``name``) in *path*."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    owner, _, name = qualname.rpartition(".")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == owner:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    doc = item.body[0]
                    assert isinstance(doc, ast.Expr), f"{qualname} has no docstring to remove"
                    assert doc.end_lineno is not None
                    del lines[doc.lineno - 1 : doc.end_lineno]
                    path.write_text("".join(lines), encoding="utf-8")
                    return
    pytest.fail(f"{qualname} not found in {path}")


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


class TestStrictBuild:
    def test_faults_fail_the_build(self, tmp_path: Path) -> None:
        """A strict build of a copy with one fault of each kind fails, naming each."""
        pytest.importorskip("sphinx")
        shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("_build"))
        shutil.copytree(ROOT / "tunnypy", tmp_path / "tunnypy")
        for linked in ("examples", "benchmarks"):  # the pages link into these
            shutil.copytree(ROOT / linked, tmp_path / linked)
        # A public method and a PoolStats field without a docstring.
        _remove_docstring(tmp_path / "tunnypy" / "_pool.py", "Pool.try_submit")
        _replace(tmp_path / "tunnypy" / "_lifecycle.py", '    """Workers holding a job."""\n', "")
        # A docstring's reference to a name that does not exist.
        _replace(
            tmp_path / "tunnypy" / "_token.py",
            "Whether the deadline has passed.",
            "Whether the deadline has passed (see :meth:`no_such_method`).",
        )
        # A name of __all__ left off the page.
        _replace(tmp_path / "docs" / "api.md", ".. autoclass:: tunnypy.SingleFlight\n", "")
        # Links to a page and to a heading that do not exist.
        _replace(
            tmp_path / "docs" / "index.md",
            "## Pages\n",
            "## Pages\n\n[gone](no-such-page.md), [moved](semantics.md#no-such-heading)\n",
        )
        completed = subprocess.run(
            [sys.executable, "-m", "sphinx", *STRICT, "docs", "out"],
            cwd=tmp_path,
            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
        warnings = completed.stderr
        assert completed.returncode != 0, warnings
        faults = [
            "tunnypy.Pool.try_submit has no docstring",
            "tunnypy.PoolStats.busy has no docstring",
            "py:meth reference target not found: no_such_method",
            "tunnypy.SingleFlight is in tunnypy.__all__ but not in the API reference",
            "'no-such-page.md'",
            "'no-such-heading'",
        ]
        for fault in faults:
            assert fault in warnings, f"{fault!r} not reported:\n{warnings}"
        # Nothing else is reported but what follows from them (a reference to
        # the SingleFlight now off the page), so the copy, not the checkout, was built.
        lines = [line for line in warnings.splitlines() if "WARNING" in line]
        unexpected = [
            line for line in lines if not any(f in line for f in [*faults, "SingleFlight"])
        ]
        assert unexpected == []
