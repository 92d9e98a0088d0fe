"""``python -m encore``: the ``encore`` command."""

from encore.cli import main

main()
