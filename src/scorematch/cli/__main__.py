"""``python -m scorematch.cli``: the ``scorematch`` command."""

from . import main

main()
