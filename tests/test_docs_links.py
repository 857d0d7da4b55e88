"""Every relative link in the project's documentation points at a file that exists.

Checked: the markdown cells of `notebooks/*.ipynb`, `README.md`, `docs/*.md`,
`outputs/README.md` and `data/README.md`. A link is a markdown `[text](target)` or
`![alt](target)`, or an HTML `href="target"` / `src="target"`, outside fenced code
blocks and code spans. http(s) and mailto links are skipped. A target resolves against
the folder of the file that holds it; a `#anchor` on a markdown file or a notebook (or
alone, meaning the same file) must be one of its headings' anchors, as GitHub derives
them.
"""
import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from lth_core import paths

ROOT = paths.REPO_ROOT
SPEC = ROOT / "docs" / "reproduction-spec.md"
EXTERNAL = re.compile(r"^(https?|mailto):", re.IGNORECASE)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)"
                  r"|\b(?:href|src)\s*=\s*[\"']([^\"']*)[\"']")
CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
ANCHORED = (".md", ".ipynb")  # the files whose anchors are checked


def documentation_files() -> list[Path]:
    """The files whose links are checked."""
    listed = [ROOT / "README.md", ROOT / "outputs" / "README.md", ROOT / "data" / "README.md"]
    return (sorted((ROOT / "notebooks").glob("*.ipynb")) + listed + sorted((ROOT / "docs").glob("*.md")))


def markdown_of(path: Path) -> str:
    """A markdown file's text, or a notebook's markdown cells joined."""
    if path.suffix != ".ipynb":
        return path.read_text()
    cells = json.loads(path.read_text())["cells"]
    sources = ("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
               for c in cells if c["cell_type"] == "markdown")
    return "\n\n".join(sources)


def prose(markdown: str) -> str:
    """The markdown without fenced code blocks and code spans (links there are examples, not links)."""
    kept, fence = [], None
    for line in markdown.splitlines():
        marker = re.match(r"\s*(```|~~~)", line)
        if marker and (fence is None or marker.group(1) == fence):
            fence = marker.group(1) if fence is None else None
        elif fence is None:
            kept.append(line)
    return CODE_SPAN.sub("", "\n".join(kept))


def links(markdown: str) -> list[str]:
    """Every link target in `markdown`, in order."""
    return [md or html for md, html in LINK.findall(prose(markdown))]


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as '-', repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(prose(markdown)):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(path: Path) -> list[str]:
    """'target (why)' for each relative link in `path` that does not resolve."""
    out = []
    for target in links(markdown_of(path)):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = unquote(target).partition("#")
        file_part = file_part.split("?")[0]
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not file_part and not anchor:
            out.append(f"{target!r} (empty link)")
        elif not resolved.exists():
            out.append(f"{target!r} (no file {resolved})")
        elif anchor and resolved.suffix in ANCHORED and anchor not in anchors(markdown_of(resolved)):
            out.append(f"{target!r} (no heading with anchor #{anchor} in {resolved.name})")
    return out


@pytest.mark.parametrize("path", documentation_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert path.exists(), f"{path} is listed as documentation but does not exist"
    broken = broken_links(path)
    assert not broken, f"{path.relative_to(ROOT)} links to what does not exist: " + "; ".join(broken)


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_link_the_spec(notebook):
    targets = [(notebook.parent / unquote(t).partition("#")[0]).resolve()
               for t in links(markdown_of(notebook)) if not EXTERNAL.match(t)]
    assert SPEC in targets, f"{notebook.name} does not link to {SPEC.relative_to(ROOT)} by a relative path"


def test_broken_links_are_reported(tmp_path):
    """The checker finds a missing file, a missing anchor and an empty link, and nothing else."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "spec.md").write_text("# Spec\n\n## The paper's settings (Table 1)\n\n## Notes\n\n## Notes\n")
    (tmp_path / "figure.png").write_bytes(b"")
    text = "\n".join([
        "[ok](docs/spec.md) [ok anchor](docs/spec.md#the-papers-settings-table-1) [repeat](docs/spec.md#notes-1)",
        "![ok image](figure.png) <img src=\"figure.png\"> [self](#title) [web](https://example.org/x.md)",
        "[mail](mailto:someone@example.org) `[in a code span](missing-span.md)`",
        "```", "[in a fence](missing-fence.md)", "```",
        "[missing](docs/nowhere.md) <a href=\"missing.html\">x</a> [bad anchor](docs/spec.md#no-such-heading) []()",
    ])
    notebook = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Title\n", "\n", text]},
                          {"cell_type": "code", "metadata": {}, "source": "x = '[code cell](missing-code.md)'",
                           "outputs": [], "execution_count": None}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(notebook))
    broken = broken_links(path)
    assert [b.split(" (")[0] for b in broken] == ["'docs/nowhere.md'", "'missing.html'",
                                                  "'docs/spec.md#no-such-heading'", "''"], broken
