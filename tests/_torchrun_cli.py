"""Run several ``scorematch`` command lines, one after the other, in one torchrun process group
(for tests: one start-up of the processes instead of one per command)::

    python -m torch.distributed.run --nproc_per_node=2 tests/_torchrun_cli.py '[["sample", ...], ...]'

Each command line goes through the real command-line program (``scorematch.cli.cli``)."""

from __future__ import annotations

import json
import sys

from scorematch.cli import cli

for argv in json.loads(sys.argv[1]):
    status = cli.main(args=argv, prog_name="scorematch", standalone_mode=False)
    if status:
        sys.exit(status)
