"""docs/guide.md links each equation to its code: every link must resolve, and every code link
must name a function or class defined in the file it points at."""

import ast
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
LINK = re.compile(r"\[([^\]]+)\]\(([^)#\s]+)\)")


def definitions(path: Path) -> set[str]:
    """Names defined in a Python file: top-level functions and classes, and ``Class.method``."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}.{n.name}" for n in node.body if isinstance(n, ast.FunctionDef)}
    return names


def guide_links():
    return LINK.findall((DOCS / "guide.md").read_text())


def test_the_guide_links_code_and_examples():
    links = guide_links()
    code = [(text, target) for text, target in links if target.endswith(".py") and text.startswith("`")]
    examples = [target for _, target in links if "/examples/" in target]
    assert len(code) >= 30 and len(examples) >= 7  # each section cites its code and its example


@pytest.mark.parametrize("text,target", guide_links())
def test_every_guide_link_resolves(text, target):
    if target.startswith("http"):
        return
    path = (DOCS / target).resolve()
    assert path.exists(), f"{target} does not exist"
    if path.suffix == ".py" and text.startswith("`"):
        name = text.strip("`")
        assert name in definitions(path), f"{name} is not defined in {target}"
