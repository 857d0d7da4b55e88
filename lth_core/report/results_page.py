"""The results page of one profile: `outputs/<profile>/index.html`, written after its notebooks ran.

`write_results_page(manifest_path)` reads the profile folder beside the manifest and writes one page:
the manifest (git commit, time, device, parameters), an overview with each notebook's status and verdict
counts, then per notebook its error when it failed, its claims table (each verdict marked by colour and
word, the reason beside a claim that is not judged), its figures (the PNG shown, linking to its PDF),
its tables, and links to its executed notebooks. Those notebooks are rendered to HTML beside their
`.ipynb` (`render_notebook`, nbconvert) with the lab template's CDN scripts left out.

Every link is relative and nothing is fetched from elsewhere (inline CSS, no scripts), so the folder
can be copied off a GPU server and opened anywhere, via file:// included.
"""
import json
from html import escape
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from jinja2 import DictLoader
from nbconvert import HTMLExporter

from lth_core.report.claims import COLUMNS, VERDICTS
from lth_core.report.tables import plural

PAGE = "index.html"
CLAIMS_CSV = "tables/claims.csv"
PAPER_CLAIMS_CSV = "tables/paper_claims.csv"  # the same rules on the paper's own figures
# background colours of the verdict words; the word is always printed too (colour alone says nothing to some)
VERDICT_COLOURS = {"holds": "#1a7f37", "does not hold": "#cf222e", "not judged": "#6e7781"}
STATUS_COLOURS = {"done": "#1a7f37", "failed": "#cf222e", "interrupted": "#cf222e", "not executed": "#cf222e",
                  "outdated": "#9a6700", "running": "#0969da"}
SHOWN_COLUMNS = [c for c in COLUMNS if c != "notebook"]

# the lab template less what it would fetch from a CDN (require.js, MathJax, mermaid, widget manager):
# offline those never load, and the notebooks' outputs need none of them
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 78em; padding: 0 1em; color: #1f2328; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border: 1px solid #d0d7de; padding: .3em .55em; text-align: left; vertical-align: top; }
/* rules and reasons hold long unbroken names (paper['unseen.pct_pruned.lenet_300_100']): wrap them anywhere */
table.claims { width: 100%; } td.rule, td.why { overflow-wrap: anywhere; }
th { background: #f6f8fa; }
.verdict, .status { color: #fff; font-weight: 600; white-space: nowrap; border-radius: .3em; padding: .1em .45em; }
.why { color: #57606a; font-size: .92em; }
.error { background: #ffebe9; border: 1px solid #cf222e; padding: .5em .8em; white-space: pre-wrap; }
.note { background: #fff8c5; border: 1px solid #d4a72c; padding: .4em .8em; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; border: 1px solid #d0d7de; padding: .5em; max-width: 100%; box-sizing: border-box; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: .9em; margin-top: .3em; }
code { background: #f6f8fa; padding: 0 .2em; }
"""


def _href(rel: str) -> str:
    """A relative link to `rel` (a path inside the profile folder), quoted for a URL and an attribute."""
    return escape(quote(rel), quote=True)


def _link(rel: str, text: str) -> str:
    return f'<a href="{_href(rel)}">{escape(text)}</a>'


def _badge(kind: str, word: str, colours: dict) -> str:
    colour = colours.get(word, "#57606a")
    return f'<span class="{kind}" style="background:{colour}">{escape(word)}</span>'


def render_notebook(ipynb: Path) -> Path:
    """Write `ipynb` as HTML beside it (same stem) and return that path; its images are embedded."""
    exporter = HTMLExporter(extra_loaders=[DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
                            template_file="offline.html.j2")
    body, _ = exporter.from_filename(str(ipynb))
    out = ipynb.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def _render_all(folder: Path) -> dict[str, str]:
    """Render every executed notebook under `folder`/notebooks; {stem: why it could not be rendered}.
    Pages whose notebook is gone (a failed copy superseded by a success) are removed."""
    problems, executed = {}, folder / "notebooks"
    for page in executed.glob("*.html"):
        if not page.with_suffix(".ipynb").exists():
            page.unlink()
    for ipynb in sorted(executed.glob("*.ipynb")):
        try:
            render_notebook(ipynb)
        except Exception as e:  # one unreadable notebook must not cost the page (built after a failure too)
            problems[ipynb.stem] = f"{type(e).__name__}: {e}"
    return problems


def _claims(folder: Path) -> tuple[pd.DataFrame, str]:
    """The claims table, and why it could not be read ("" when it could: a damaged one shows no claims)."""
    path = folder / CLAIMS_CSV
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS), ""
    try:
        claims = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        return pd.DataFrame(columns=COLUMNS), f"{CLAIMS_CSV} could not be read ({type(e).__name__}: {e})"
    missing = sorted(set(COLUMNS) - set(claims.columns))
    if missing:
        return pd.DataFrame(columns=COLUMNS), f"{CLAIMS_CSV} lacks the columns {', '.join(missing)}"
    return claims, ""


def _paper_line(folder: Path, name: str) -> str:
    """How many of notebook `name`'s claims hold on the paper's own figures (its rows of PAPER_CLAIMS_CSV)."""
    path = folder / PAPER_CLAIMS_CSV
    try:
        rows = pd.read_csv(path, dtype=str, keep_default_na=False) if path.exists() else pd.DataFrame()
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return f'<p class="note">{PAPER_CLAIMS_CSV} could not be read: running the profile again rebuilds it.</p>'
    if not {"notebook", "verdict"} <= set(rows.columns) or not (rows["notebook"] == name).any():
        return ""
    mine = rows[rows["notebook"] == name]
    held = int((mine["verdict"] == "holds").sum())
    return (f"<p>Applied to the paper's own figures, {held} of {len(mine)} claims hold (the same rules and "
            f"preconditions: {_link(PAPER_CLAIMS_CSV, Path(PAPER_CLAIMS_CSV).name)}).</p>")


def _verdict_counts(rows: pd.DataFrame) -> str:
    counts = rows["verdict"].value_counts()
    return ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)


def _manifest_section(manifest: dict, manifest_name: str) -> str:
    parameters = manifest.get("parameters", {})
    device = manifest.get("device") or parameters.get("device", "not recorded")
    facts = [("profile", manifest.get("profile", "not recorded")),
             ("git commit", manifest.get("git_commit") or "not recorded (not a git checkout)"),
             ("updated", manifest.get("updated", "not recorded")),
             ("device", device)]
    rows = "".join(f"<tr><th>{escape(k)}</th><td><code>{escape(str(v))}</code></td></tr>" for k, v in facts)
    params = "".join(f"<tr><th>{escape(k)}</th><td><code>{escape(json.dumps(v))}</code></td></tr>"
                     for k, v in sorted(parameters.items()))
    return (f"<h2 id=\"manifest\">Manifest</h2><table>{rows}</table>"
            f"<details><summary>parameters ({len(parameters)})</summary><table>{params}</table></details>"
            f"<p>Everything recorded, per notebook with the sha256 of each file it published: "
            f"{_link(manifest_name, manifest_name)}</p>")


def _claims_table(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "<p>No claims table recorded for this notebook.</p>"
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in SHOWN_COLUMNS)
    body = []
    for _, row in rows.iterrows():
        cells = []
        for c in SHOWN_COLUMNS:
            if c == "verdict":
                cells.append(f"<td>{_badge('verdict', row[c], VERDICT_COLOURS)}</td>")
            else:
                cells.append(f'<td class="{c}">{escape(row[c])}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<p>{plural(len(rows), 'claim')}: {escape(_verdict_counts(rows))}.</p>"
            f"<table class=\"claims\"><tr>{head}</tr>{''.join(body)}</table>")


def _figures(folder: Path, pngs: list[str]) -> str:
    if not pngs:
        return ""
    out = []
    for rel in pngs:
        stem = Path(rel).stem
        pdf = str(Path(rel).with_suffix(".pdf"))
        pdf_link = f" ({_link(pdf, 'PDF')})" if (folder / pdf).exists() else ""
        out.append(f'<figure><a href="{_href(rel)}"><img src="{_href(rel)}" alt="{escape(stem, quote=True)}"></a>'
                   f"<figcaption><code>{escape(stem)}</code>{pdf_link}</figcaption></figure>")
    return f"<h3>Figures</h3><div class=\"figures\">{''.join(out)}</div>"


def _notebook_links(folder: Path, name: str, render_problems: dict[str, str]) -> str:
    links = []
    for stem, what in ((name, "executed notebook"), (f"{name}.failed", "failed execution")):
        if not (folder / "notebooks" / f"{stem}.ipynb").exists():
            continue
        ipynb = _link(f"notebooks/{stem}.ipynb", ".ipynb")
        if stem in render_problems:
            links.append(f"{escape(what)} ({ipynb}; could not be rendered: {escape(render_problems[stem])})")
        else:
            links.append(f"{_link(f'notebooks/{stem}.html', what)} ({ipynb})")
    return f"<p>{' &middot; '.join(links)}</p>" if links else "<p>No executed notebook on disk.</p>"


def _notebook_section(folder: Path, name: str, record: dict, claims: pd.DataFrame,
                      render_problems: dict[str, str]) -> str:
    status = record.get("status", "not run")
    published = record.get("published", {})
    parts = [f'<h2 id="{escape(name, quote=True)}">{escape(name)} {_badge("status", status, STATUS_COLOURS)}</h2>']
    if record.get("error"):  # failed, interrupted, or not executed because its runs failed
        parts.append(f'<div class="error">{escape(record["error"])}</div>')
    if status not in ("done", "outdated") and published:
        parts.append(f'<p class="note">The outputs below are from its last success '
                     f'({escape(published.get("started", "time not recorded"))}), not from this attempt.</p>')
    if status == "outdated":
        parts.append('<p class="note">These outputs were made with other parameters than the profile\'s current '
                     "ones; running the profile again replaces them.</p>")
    parts.append(_notebook_links(folder, name, render_problems))
    parts.append("<h3>Claims</h3>" + _paper_line(folder, name) + _claims_table(claims[claims["notebook"] == name]))
    files = sorted(published.get("files", {}))
    parts.append(_figures(folder, [f for f in files if f.startswith("figures/") and f.endswith(".png")]))
    tables = [f for f in files if f.startswith("tables/") and f.endswith(".csv")]
    if tables:
        parts.append("<h3>Tables</h3><p>" + " &middot; ".join(_link(t, Path(t).name) for t in tables) + "</p>")
    return "<section>" + "".join(parts) + "</section>"


def _overview(names: list[str], records: dict, claims: pd.DataFrame) -> str:
    rows = []
    for name in names:
        mine = claims[claims["notebook"] == name]
        counts = mine["verdict"].value_counts()
        status = records.get(name, {}).get("status", "not run")
        rows.append(f'<tr><td><a href="#{_href(name)}">{escape(name)}</a></td>'
                    f"<td>{_badge('status', status, STATUS_COLOURS)}</td>"
                    + "".join(f"<td>{counts.get(v, 0)}</td>" for v in VERDICTS) + "</tr>")
    head = "".join(f"<th>{_badge('verdict', v, VERDICT_COLOURS)}</th>" for v in VERDICTS)
    return f"<table><tr><th>notebook</th><th>status</th>{head}</tr>{''.join(rows)}</table>"


def write_results_page(manifest_path: Path) -> Path:
    """Write index.html into the profile folder that holds `manifest_path`, rendering its executed
    notebooks to HTML first; returns the page's path."""
    folder = manifest_path.parent
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    records = manifest.get("notebooks", {})
    claims, claims_problem = _claims(folder)
    names = sorted(set(records) | set(claims["notebook"]))
    render_problems = _render_all(folder) if (folder / "notebooks").is_dir() else {}
    published = {f for r in records.values() for f in r.get("published", {}).get("files", {})}
    others = sorted(f"figures/{p.name}" for p in (folder / "figures").glob("*.png")
                    if f"figures/{p.name}" not in published)
    title = f"Results: profile {manifest.get('profile', folder.name)}"
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>"
            + (f'<div class="error">{escape(claims_problem)}: running the profile again rebuilds it</div>'
               if claims_problem else "")
            + _overview(names, records, claims)
            + _manifest_section(manifest, manifest_path.name)
            + "".join(_notebook_section(folder, n, records.get(n, {}), claims, render_problems) for n in names)
            + (f"<section><h2 id=\"other-figures\">Figures no notebook recorded</h2>{_figures(folder, others)}"
               "</section>" if others else "")
            + "</body></html>\n")
    out = folder / PAGE
    tmp = folder / f".{PAGE}.tmp"  # replaced in one step: a browser never reads half a page
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
