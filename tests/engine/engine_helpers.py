"""Shared helpers of the engine tests: a tiny model config (64 px, ~0.1 M parameters)."""

from __future__ import annotations

from pathlib import Path

from tiny_run import TINY_RUN


def tiny_overrides(data: Path, out: Path, epochs: int = 3) -> list[str]:
    """Dotted overrides of a tiny, fast MambaAD on 64 px images."""
    return [f"data.root={data}", f"out={out}", *TINY_RUN, f"train.epochs={epochs}"]


def as_cli(overrides: list[str]) -> list[str]:
    """The same overrides as ``--key=value`` command-line options."""
    return [f"--{o}" for o in overrides]
