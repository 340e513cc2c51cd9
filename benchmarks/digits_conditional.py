"""The README's pictures of conditional digits (issue #21): a class-conditional grid, one row per
digit, drawn with classifier-free guidance, and held-out digits with their left half hidden and
filled in by the same run's mask-conditional network.

The run is trained by the command line with its defaults:

    scorematch train --data digits --labels class --conditional --out runs/digits-cond
    python benchmarks/digits_conditional.py runs/digits-cond --out docs

It writes ``digits_classes.png`` and ``digits_inpainted.png`` (rows: the held-out digit, its
right half alone, the left half filled in; one column per class).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from scorematch.plots import image_grid
from scorematch.runs import load_run
from scorematch.runs.imputation import imputation_chunks, region_mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run = load_run(args.run)
    rows = []
    for digit in range(10):
        print(f"digit {digit}: {args.per_class} samples, guidance {args.guidance:g}", flush=True)
        drawn = run.sample(args.per_class, seed=args.seed + digit, label=digit,
                           guidance=args.guidance)  # fmt: skip
        rows.append(drawn.x.clamp(0, 1))
    classes = image_grid(torch.cat(rows), args.out / "digits_classes.png", nrow=args.per_class)
    print(f"wrote {classes}")

    # The first held-out digit of each class, its left half hidden and filled in.
    test, labels = run.data.test, run.data.test_labels
    pick = [int(torch.nonzero(labels == d)[0]) for d in range(10)]
    x = test[pick].double()
    hidden = x.clone()
    hidden[:, :, region_mask("left", tuple(run.shape[1:]))] = math.nan
    (_, _, filled), = imputation_chunks(run, hidden, draws=1, seed=args.seed)  # fmt: skip
    grid = torch.cat([x, hidden.nan_to_num(0.5), filled[0].clamp(0, 1)])
    inpainted = image_grid(grid, args.out / "digits_inpainted.png", nrow=10)
    print(f"wrote {inpainted}")


if __name__ == "__main__":
    main()
