"""``python -m advcal`` runs the command line (also under ``torchrun``)."""

from advcal.cli import main

main()
