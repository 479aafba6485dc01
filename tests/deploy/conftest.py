"""Deploy tests: one tiny trained run (64 px, 1 epoch, a quarter of the normals held out), one thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from deploy_helpers import TINY


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test of this folder runs with one intra-op thread (``one_torch_thread``)."""


@pytest.fixture(scope="session")
def trained_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run folder whose checkpoints carry a calibrated threshold."""
    from mambaad.config import load_config
    from mambaad.engine.trainer import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("deploy") / "run"
    cfg = load_config(None, [f"data.root={synth_root}", f"out={out}", "data.holdout_fraction=0.25", *TINY])
    assert train(cfg, progress=False, echo=None) is not None
    return out
