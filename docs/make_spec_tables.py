"""Write the profile columns of the spec's parameter tables from the profiles' YAML files.

    python docs/make_spec_tables.py           # rewrite docs/reproduction-spec.md in place
    python docs/make_spec_tables.py --check   # exit 1, naming the rows, when the spec is out of step

In the section "The experiments and their parameters" of docs/reproduction-spec.md, every table whose
header reads `| parameter | field | default | `<profile>` | ... |` has one column per profile named in
its header. Each row's cell in such a column is written from `notebooks/params/<profile>.yaml`: the
profile's value when the file sets the parameter, "default" when it does not (the profile keeps the
notebook's default). The parameter, field and default cells are the spec's own words and are left as
they are (`tests/test_docs_spec.py` checks the defaults against the notebooks). A changed profile is
then one command away from the spec; a new column is one header cell, then the same command.
"""
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "docs" / "reproduction-spec.md"
PARAMS = ROOT / "notebooks" / "params"
SECTION = "## The experiments and their parameters"
HEADER = re.compile(r"^\|\s*parameter\s*\|\s*field\s*\|\s*default\s*\|((?:\s*`\w+`\s*\|)+)\s*$")
ROW = re.compile(r"^\|\s*`(\w+)`\s*\|")


def cell(value) -> str:
    """A profile's value as the spec writes it: numbers bare, everything else as a Python-like code span."""
    if isinstance(value, bool) or value is None:
        return f"`{value!r}`"
    if isinstance(value, float) and value != 0 and abs(value) < 0.01:
        mantissa, exponent = f"{value:.6e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"  # 0.0002 -> 2e-4, as the spec writes it
    if isinstance(value, (int, float)):
        return repr(value)
    return f"`{json.dumps(value)}`"


def split_row(line: str) -> list[str]:
    """The cells of a table row, code spans kept whole (a `|` inside backticks is not a separator)."""
    cells, current, in_code = [], "", False
    for ch in line.strip()[1:-1]:
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += ch
    cells.append(current.strip())
    return cells


def load_profiles(names) -> dict[str, dict]:
    return {n: yaml.safe_load((PARAMS / f"{n}.yaml").read_text()) or {} for n in names}


def render(text: str, profiles: dict[str, dict] | None = None) -> str:
    """`text` with every parameter table's profile cells written from `profiles` ({name: yaml values},
    read from notebooks/params/ when None)."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    end = len(text) if end < 0 else end
    lines = text[start:end].split("\n")
    columns: list[str] | None = None
    for i, line in enumerate(lines):
        header = HEADER.match(line)
        if header:
            columns = re.findall(r"`(\w+)`", header.group(1))
            if profiles is None or not set(columns) <= set(profiles):
                profiles = {**(profiles or {}), **load_profiles(c for c in columns if c not in (profiles or {}))}
            continue
        if columns is None:
            continue
        if not line.startswith("|"):
            columns = None  # the table ended
            continue
        name = ROW.match(line)
        if not name:
            continue  # the separator row
        cells = split_row(line)
        fixed = cells[:3]
        written = [cell(profiles[p][name.group(1)]) if name.group(1) in profiles[p] else "default" for p in columns]
        lines[i] = "| " + " | ".join(fixed + written) + " |"
    return text[:start] + "\n".join(lines) + text[end:]


def main(argv: list[str]) -> int:
    text = SPEC.read_text()
    new = render(text)
    if "--check" in argv:
        changed = [b for a, b in zip(text.splitlines(), new.splitlines()) if a != b]
        if changed:
            print(f"{SPEC.relative_to(ROOT)} is out of step with notebooks/params/*.yaml; run "
                  f"`python docs/make_spec_tables.py`. Rows it would write:\n" + "\n".join(changed))
            return 1
        return 0
    if new != text:
        SPEC.write_text(new)
        print(f"wrote {SPEC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
