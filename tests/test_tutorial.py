"""docs/tutorial.md stays true: its Python blocks run in order (fast, at a few steps), print what the
page shows under them (slow test, at the page's STEPS), and the benchmark figures it quotes are
those of benchmarks/results/objectives_compare.json."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
RESULTS = ROOT / "benchmarks" / "results" / "objectives_compare.json"


def blocks() -> list[tuple[str, str | None]]:
    """(python code, the text block right after it or None), in page order."""
    found = re.findall(r"```(python|text)\n(.*?)```", TUTORIAL, flags=re.S)
    out = []
    for kind, body in found:
        if kind == "python":
            out.append([body, None])
        elif out and out[-1][1] is None:
            out[-1][1] = body
    return [(code, text) for code, text in out]


def run_blocks(steps: int | None, tmp_path, monkeypatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    printed = []
    torch.set_num_threads(1)
    for i, (code, _) in enumerate(blocks()):
        if steps is not None:
            assert "STEPS = 2000" in code or i > 0
            code = code.replace("STEPS = 2000", f"STEPS = {steps}")
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(code, f"tutorial block {i + 1}", "exec"), namespace)
        printed.append(buffer.getvalue())
    return printed


def test_tutorial_blocks_run_and_write_their_pictures(tmp_path, monkeypatch):
    assert len(blocks()) == 7
    run_blocks(4, tmp_path, monkeypatch)
    pictures = set(re.findall(r'"(\w+\.png)"', TUTORIAL))
    assert {"ism.png", "dsm_vs_blurred.png", "vp.png", "energy.png"} <= pictures
    for name in pictures:
        assert (tmp_path / name).stat().st_size > 10_000, name
    for name in re.findall(r"\]\(tutorial/(\w+\.png)\)", TUTORIAL):  # committed pictures
        assert (ROOT / "docs" / "tutorial" / name).is_file() and name in pictures


@pytest.mark.slow
def test_tutorial_prints_what_the_page_shows(tmp_path, monkeypatch):
    printed = run_blocks(None, tmp_path, monkeypatch)
    for (_, shown), out in zip(blocks(), printed):
        if shown is not None:
            assert out.strip() == shown.strip()


def test_tutorial_quotes_the_benchmark():
    res = json.loads(RESULTS.read_text())["2"]
    res10 = json.loads(RESULTS.read_text())["10"]
    flat = " ".join(TUTORIAL.split())
    ism_ratio = res10["ISM"]["ms_per_step"] / res["ISM"]["ms_per_step"]
    vr_ratio = res10["SSM-VR"]["ms_per_step"] / res["SSM-VR"]["ms_per_step"]
    assert f"(×{ism_ratio:.1f})" in flat and f"(×{vr_ratio:.1f})" in flat
    common = {n: res[n]["grad_var_common"] for n in ("ISM", "SSM", "SSM-VR")}
    assert f"SSM's gradient is {common['SSM'] / common['ISM']:.1f}× noisier" in flat
    assert f"SSM-VR's {common['SSM-VR'] / common['ISM']:.1f}×" in flat
    for name, row in res.items():
        if name.startswith("_"):
            continue
        cells = " | ".join(f"{row['fd'][s]['fisher']:.3g}" for s in ("0", "0.05", "0.2", "0.5"))
        assert f"| {name} | {cells} |" in TUTORIAL, name
