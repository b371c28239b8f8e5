"""``python -m advcal`` runs the command line (also under ``torchrun``)."""

from advcal.cli import entry_point

entry_point()
