"""Shared settings of the deploy tests: the tiny MambaAD of ``tiny_run`` trained for 1 epoch."""

from tiny_run import TINY_RUN

TINY = [*TINY_RUN, "train.epochs=1"]
