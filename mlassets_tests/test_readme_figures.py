"""The README's demo figures stay checkable: `make readme-check` (mlassets_tests.readme_figures)
runs a real demo and fails on any figure that drifted; here, without a demo, that every
figure's sentence is still in README.md and that a drifted figure is named and rewritten."""

import re

import pytest

from mlassets_tests.readme_figures import END, FIGURES, README, START, block, drift, write

pytestmark = pytest.mark.unit

DEMO = {
    "summary": "== fraud_detection\nrun 0123abcd: SUCCESS\nrows read: 10000 from /tmp/x/data/t.parquet\n",
    "fraud_detection": {
        "evaluation_report": {
            "fairness": "fairness passes ...\n\n**category**: demographic parity difference "
            "0.061, equalized odds difference 0.008\n\n| group |"
        },
        "candidate_model": {"threshold_choice": "decision threshold 0.5: nearest 0.5 (a)"},
    },
}


def test_every_figure_the_readme_cites_is_where_the_check_looks():
    text = README.read_text()
    assert text.count(START) == 1 and text.count(END) == 1
    for name, (pattern, _) in FIGURES.items():
        assert re.search(pattern, text), f"{name}: /{pattern}/ is gone from README.md"


def test_a_drifted_figure_is_named_and_the_write_puts_the_demos_in():
    text = README.read_text()
    problems = drift(text, DEMO)
    assert any("the demo's printout" in p for p in problems)
    assert any(p.startswith("fraud demographic parity: README says") for p in problems)
    fixed = write(text, DEMO)
    assert drift(fixed, DEMO) == []
    assert "rows read: 10000 from /…/.mlassets/data/t.parquet" in fixed
    assert "run …: SUCCESS" in block(DEMO["summary"])
    assert "demographic parity difference of 0.061 in the demo" in fixed
