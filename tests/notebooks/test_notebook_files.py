"""The notebooks as committed: sources only (the repository keeps no outputs), each cell with the id
nbformat 4.5 gives it (tools that add a missing one rewrite the file on every save), valid by nbformat."""
import json

import nbformat
import pytest

from lth_core import paths

NOTEBOOKS = sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_hold_sources_only_and_every_cell_has_an_id(path):
    raw = json.loads(path.read_text())
    for i, cell in enumerate(raw["cells"]):
        assert cell.get("id"), f"{path.name} cell {i} has no id"
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name} cell {i} holds outputs"
    assert len({c["id"] for c in raw["cells"]}) == len(raw["cells"]), f"{path.name}: repeated cell ids"
    nbformat.validate(nbformat.reads(path.read_text(), as_version=4))


def test_there_are_notebooks_to_check():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03"]
