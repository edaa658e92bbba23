"""``python -m kubefuncs.functl``: the same as the ``functl`` command."""

from .cli import main

main(prog_name="functl")
