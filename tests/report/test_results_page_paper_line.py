"""The results page says, per notebook, how many of its claims hold on the paper's own figures."""
import json

import pandas as pd

from lth_core.report.claims import COLUMNS
from lth_core.report.results_page import write_results_page


def _claims(notebook, verdicts):
    return pd.DataFrame([dict(zip(COLUMNS, (notebook, "conv2", f"claim {i}", "Fig. 1", "-", "-", "x > 0", v, "")))
                         for i, v in enumerate(verdicts)], columns=COLUMNS)


def test_the_page_counts_the_claims_that_hold_on_the_papers_figures(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "manifest.json").write_text(json.dumps({"profile": "smoke", "notebooks": {}}))
    _claims("01_trainability_unseen", ["does not hold"]).to_csv(tmp_path / "tables" / "claims.csv", index=False)
    _claims("01_trainability_unseen", ["holds", "holds", "does not hold"]).to_csv(
        tmp_path / "tables" / "paper_claims.csv", index=False)
    page = write_results_page(tmp_path / "manifest.json").read_text()
    assert "Applied to the paper's own figures, 2 of 3 claims hold" in page
    (tmp_path / "tables" / "paper_claims.csv").write_bytes(b"\xff\xfe\x00garbage")
    page = write_results_page(tmp_path / "manifest.json").read_text()
    assert "paper_claims.csv could not be read" in page and "2 of 3" not in page
