"""Shared helpers of the engine tests: a tiny model config (64 px, ~0.1 M parameters)."""

from __future__ import annotations

from pathlib import Path


def tiny_overrides(data: Path, out: Path, epochs: int = 3) -> list[str]:
    """Dotted overrides of a tiny, fast MambaAD on 64 px images."""
    return [
        f"data.root={data}",
        f"out={out}",
        "model.encoder=test_efficientnet",
        "model.encoder_weights=none",
        "model.depths=[1,1,1,1]",
        "model.directions=2",
        "model.d_state=4",
        "model.expand=1",
        "data.image_size=64",
        "data.crop_size=64",
        "data.num_workers=0",
        "train.batch_size=4",
        f"train.epochs={epochs}",
        "train.device=cpu",
        "eval.gaussian_sigma=1.0",
    ]


def as_cli(overrides: list[str]) -> list[str]:
    """The same overrides as ``--key=value`` command-line options."""
    return [f"--{o}" for o in overrides]
