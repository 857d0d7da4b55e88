"""The results page (`outputs/<profile>/index.html`) built from a small fake profile folder: one notebook
done, one failed after an earlier success. Without a browser: what the page says, that every link and
image is relative and on disk, and that the rendered notebooks fetch nothing. In Debian's headless
chromium (skipped, with the reason, when it is absent), from a copy of the folder via file://: every
image decodes, every link's target exists, nothing fails to load, and verdicts show their words and
colours."""
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import matplotlib
import nbformat
import pandas as pd
import pytest

from lth_core.report.claims import COLUMNS
from lth_core.report.results_page import STATUS_COLOURS, VERDICT_COLOURS, write_results_page

import devtools

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CLAIMS = [
    ("01_a", "lenet", "tickets train on unseen data", "Fig. 1", "98%", "98.1%", "ours >= paper - 1", "holds",
     "one seed only: no confidence interval"),
    ("01_a", "conv2", "tickets stop earlier", "Fig. 1", "yes", "no", "es_ticket <= es_dense", "does not hold",
     "one seed only: no confidence interval"),
    ("01_a", "shufflenet", "a winning ticket exists", "Fig. 4", "<2% drop", "n/a",
     "drop < paper['shufflenet.winning_ticket.accuracy_drop_at_the_sparsest_level']", "not judged",
     "the unpruned network did not learn (10.3% test accuracy, chance is 10%) (needs dense_test_acc >= "
     "LEARNED_FRACTION*paper['shufflenet.dense_test_acc_with_batch_norm_pruned_and_late_rewinding_to_iteration_500'])"),
    ("02_b", "lenet", "subsets find tickets faster", "Fig. 2", "3x", "2.1x", "speed-up > 1", "holds",
     "mean over 3 seeds"),
]


def _figure(folder: Path, stem: str, colour: str) -> None:
    fig, ax = plt.subplots(figsize=(2.4, 1.6))
    ax.plot([0, 1, 2], [3, 1, 2], color=colour)
    for ext in ("png", "pdf"):
        fig.savefig(folder / "figures" / f"{stem}.{ext}", dpi=60)
    plt.close(fig)


def _executed_notebook(path: Path, error: bool = False) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A tiny notebook\nwith $x^2$ maths"),
                nbformat.v4.new_code_cell("1 + 1", execution_count=1, outputs=[
                    nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)])]
    if error:
        nb.cells.append(nbformat.v4.new_code_cell("assert False, 'asked to fail'", execution_count=2, outputs=[
            nbformat.v4.new_output("error", ename="AssertionError", evalue="asked to fail", traceback=[])]))
    nbformat.write(nb, path)


@pytest.fixture
def profile_folder(tmp_path) -> Path:
    folder = tmp_path / "outputs" / "smoke"
    for sub in ("figures", "tables", "notebooks"):
        (folder / sub).mkdir(parents=True)
    _figure(folder, "fig1_lenet_mnist", "tab:blue")
    _figure(folder, "fig2 lenet mnist", "tab:red")  # a space: links must be URL-quoted
    pd.DataFrame(CLAIMS, columns=COLUMNS).to_csv(folder / "tables" / "claims.csv", index=False)
    _executed_notebook(folder / "notebooks" / "01_a.ipynb")
    _executed_notebook(folder / "notebooks" / "02_b.ipynb")
    _executed_notebook(folder / "notebooks" / "02_b.failed.ipynb", error=True)
    published = {"fingerprint": "f", "git_commit": "abc123", "started": "2026-11-27T10:00:00+00:00"}
    manifest = {
        "profile": "smoke", "git_commit": "abc123def456-dirty", "updated": "2026-11-27T11:00:00+00:00",
        "device": "cpu", "parameters": {"device": "auto", "seeds": [0], "rounds": 3},
        "notebooks": {
            "01_a": {"status": "done", "published": {**published, "files": {
                "notebooks/01_a.ipynb": "x", "tables/claims.csv": "x", "figures/fig1_lenet_mnist.png": "x",
                "figures/fig1_lenet_mnist.pdf": "x"}}},
            "02_b": {"status": "failed", "error": "AssertionError: asked to fail <b>here</b>",
                     "published": {**published, "files": {
                         "notebooks/02_b.ipynb": "x", "tables/claims.csv": "x",
                         "figures/fig2 lenet mnist.png": "x", "figures/fig2 lenet mnist.pdf": "x"}}}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


class _Refs(HTMLParser):
    """Every href and src of a page."""
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        self.refs += [(tag, value) for name, value in attrs if name in ("href", "src") and value is not None]


def _refs(page: Path) -> list[tuple[str, str]]:
    parser = _Refs()
    parser.feed(page.read_text())
    return parser.refs


def test_the_page_shows_claims_figures_failures_and_manifest(profile_folder):
    page = write_results_page(profile_folder / "manifest.json")
    assert page == profile_folder / "index.html"
    text = page.read_text()
    for verdict, colour in VERDICT_COLOURS.items():
        assert re.search(f'<span class="verdict" style="background:{colour}">{verdict}</span>', text), verdict
    assert f'style="background:{STATUS_COLOURS["failed"]}">failed</span>' in text
    assert "the unpruned network did not learn (10.3% test accuracy" in text  # why it is not judged
    assert "&lt;2% drop" in text and "asked to fail &lt;b&gt;here&lt;/b&gt;" in text  # escaped, not markup
    assert "<b>here" not in text
    assert "3 claims: 1 holds, 1 does not hold, 1 not judged." in text
    assert "abc123def456-dirty" in text and "2026-11-27T11:00:00+00:00" in text and "<code>cpu</code>" in text
    assert "last success" in text  # a failed notebook's outputs are said to be the earlier ones
    refs = _refs(page)
    for tag, ref in refs:
        assert not urlparse(ref).scheme and not ref.startswith("/"), f"not relative: {ref}"
        if not ref.startswith("#"):
            assert (profile_folder / unquote(ref)).is_file(), ref
    targets = {unquote(r) for _, r in refs}
    assert {"notebooks/01_a.html", "notebooks/02_b.html", "notebooks/02_b.failed.html", "manifest.json",
            "figures/fig1_lenet_mnist.pdf", "figures/fig2 lenet mnist.pdf", "tables/claims.csv"} <= targets
    assert [r for t, r in refs if t == "img"] == ["figures/fig1_lenet_mnist.png", "figures/fig2%20lenet%20mnist.png"]


def test_rendered_notebooks_fetch_nothing_and_stale_ones_go(profile_folder):
    (profile_folder / "notebooks" / "03_c.failed.html").write_text("a failed copy since superseded")
    write_results_page(profile_folder / "manifest.json")
    assert not (profile_folder / "notebooks" / "03_c.failed.html").exists()
    rendered = profile_folder / "notebooks" / "02_b.failed.html"
    assert "asked to fail" in rendered.read_text()
    fetched = [ref for tag, ref in _refs(rendered) if tag in ("script", "link", "img") and urlparse(ref).scheme
               and not ref.startswith("data:")]
    assert not fetched


def test_a_notebook_that_cannot_be_rendered_is_named_on_the_page(profile_folder):
    (profile_folder / "notebooks" / "01_a.ipynb").write_text("{not json")
    text = write_results_page(profile_folder / "manifest.json").read_text()
    assert "could not be rendered" in text and not (profile_folder / "notebooks" / "01_a.html").exists()


# the page's own state, read in the browser: what a reader sees
PAGE_STATE = """({
  images: [...document.images].map(i => ({src: i.getAttribute('src'), width: i.naturalWidth, done: i.complete})),
  links: [...document.querySelectorAll('a[href]')].map(a => ({raw: a.getAttribute('href'), url: a.href})),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  verdicts: [...document.querySelectorAll('table.claims .verdict')].map(
      v => ({word: v.textContent, colour: getComputedStyle(v).backgroundColor})),
  title: document.title,
  overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth
})"""


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


@pytest.mark.skipif(devtools.missing() is not None, reason=devtools.missing() or "")
def test_the_page_in_headless_chromium_from_a_copied_folder(profile_folder, tmp_path):
    write_results_page(profile_folder / "manifest.json")
    copy = shutil.copytree(profile_folder, tmp_path / "copied elsewhere" / "smoke")  # as off a GPU server
    shutil.rmtree(profile_folder)
    with devtools.Chromium() as browser:
        browser.load((copy / "index.html").as_uri())
        state = browser.evaluate(PAGE_STATE)
        assert not browser.failed_loads, browser.failed_loads
        assert state["title"] == "Results: profile smoke"
        assert state["overflow"] <= 0, "the page is wider than the window: long claims text must wrap"
        assert len(state["images"]) == 2
        for image in state["images"]:
            assert image["done"] and image["width"] > 0, f"image not shown: {image['src']}"
        for link in state["links"]:
            if link["raw"].startswith("#"):
                assert link["raw"][1:] in state["ids"], f"no anchor for {link['raw']}"
            else:
                target = Path(unquote(urlparse(link["url"]).path))
                assert target.is_file() and copy in target.parents, f"broken link: {link['raw']}"
        verdicts = {(v["word"], v["colour"]) for v in state["verdicts"]}
        assert verdicts == {(word, _rgb(colour)) for word, colour in VERDICT_COLOURS.items()}
        browser.screenshot(tmp_path / "page.png")
        assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        for link in state["links"]:  # the rendered notebooks open offline too: nothing they ask for fails
            if link["raw"].endswith(".html"):
                browser.load(link["url"])
                assert not browser.failed_loads, (link["raw"], browser.failed_loads)
                assert "A tiny notebook" in browser.evaluate("document.body.innerText")
