"""``python -m scorematch``: the ``scorematch`` command."""

from .cli import main

main()
