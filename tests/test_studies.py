"""The studies in docs/studies quote numbers derived from their own tables: keep them consistent.

Each test reads a table of the page (the benchmark's output, copied there), recomputes the figure the
prose quotes, and asserts the prose says it — so a re-run that changes the table fails here until the
sentence is updated.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "docs" / "studies"


def _flat(text: str) -> str:
    return " ".join(text.split())


def _table_rows(text: str, first_cell: str) -> list[list[str]]:
    """The cells of every markdown table row whose first cell starts with ``first_cell``."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].strip("*").startswith(first_cell):
            rows.append(cells)
    return rows


def _number(cell: str) -> float:
    """The leading number of a cell such as '**0.377 ± 0.047**' or '2.78 ± 0.29 (0.1)'."""
    return float(re.search(r"-?\d[\d ]*\.?\d*", cell.replace("*", "")).group().replace(" ", ""))


def test_noise_levels_quotes_the_affine_gain_of_its_headline_table():
    text = (STUDIES / "noise-levels.md").read_text(encoding="utf-8")
    headline = text[text.index("## Headline") :]
    headline = headline[: headline.index("\n## ", 1)]
    (best,) = _table_rows(headline, "best single σ, by truth")
    (affine,) = _table_rows(headline, "fitted affine")
    # Columns: 2-D N = 500, 5 000, 50 000, then 10-D N = 500, 5 000, 50 000.
    gain = [_number(b) / _number(a) for b, a in zip(best[1:], affine[1:])]
    large_n = [gain[1], gain[2], gain[4], gain[5]]
    flat = _flat(text)
    assert (
        f"{gain[1]:.1f}× (N = 5 000) and {gain[2]:.1f}× (N = 50 000) in 2-D, and "
        f"{gain[4]:.1f}× and {gain[5]:.1f}× in 10-D" in flat
    )
    assert f"at N = 500 only {gain[0]:.1f}× (2-D) and {gain[3]:.1f}× (10-D)" in flat
    assert f"beats the best single σ {min(large_n):.1f}–{max(large_n):.1f}×" in flat
    assert f"(gain {gain[0]:.1f}–{gain[3]:.1f}×)" in flat


def test_uniqueness_quotes_the_ratio_range_of_its_convergence_table():
    text = (STUDIES / "uniqueness.md").read_text(encoding="utf-8")
    header = next(line for line in text.splitlines() if line.startswith("| step |"))
    names = [c.strip() for c in header.strip().strip("|").split("|")]
    rows = [r for r in _table_rows(text, "") if r[0].replace(" ", "").isdigit()]
    rows = [r for r in rows if len(r) == len(names)]
    assert len(rows) == 4
    ratios = []
    for row in rows:
        for k in range(1, len(names), 2):
            assert names[k].endswith("to exact") and names[k + 1] == "between"
            ratios.append(_number(row[k + 1]) / _number(row[k]))
    last = ratios[-4:]  # the 8 000-step row
    flat = _flat(text)
    assert f"ranges over {min(ratios):.2f}–{max(ratios):.2f} in the table" in flat
    assert f"({min(last):.2f}–{max(last):.2f} at 8 000 steps)" in flat
    assert f"{min(ratios):.2f} at t = 0.2 after 250 steps" in flat
    assert min(ratios) == ratios[2]  # the t = 0.2 cell of the first row, as the prose says


def test_theory_quotes_the_ensemble_ridge_measurement():
    results = (ROOT / "benchmarks" / "results" / "ensemble_weights.md").read_text(encoding="utf-8")
    found = re.search(r"lower in (\d+) of (\d+) \(setting, N\) cells", results)
    assert found, "benchmarks/results/ensemble_weights.md no longer states its count"
    theory = _flat((ROOT / "docs" / "theory.md").read_text(encoding="utf-8"))
    assert f"in {found.group(1)} of {found.group(2)} settings" in theory
    assert "Chosen on A: **ρ* = 0.001**" in results  # the default fit uses (ensemble.DEFAULT_RIDGE)
