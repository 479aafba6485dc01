"""Models chosen by name (``--model``): one explicit table, no import side effects.

Every model follows the same small interface, so the engine, CLI, reports and export treat them alike:

    model.training_loss(images) -> scalar        # (B, 3, H, W) ImageNet-normalised normal images
    model.predict(images) -> (maps, scores)      # (B, H, W) smoothed anomaly maps, (B,) image scores
    model.config_dict() -> dict                  # everything needed to rebuild it (stored in checkpoints)
    model.trainable_parameters() -> named (name, parameter) pairs the optimizer updates
    model.set_train_progress(step, total_steps)  # optional: the trainer calls it before every optimizer
                                                 # step (0-based global step), for schedules over the run

A model module registers a builder ``build(**options) -> nn.Module`` in :data:`MODELS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from mambaad.errors import ConfigError

# name -> "module:function"; modules are imported on first use
MODELS: dict[str, str] = {
    "mambaad": "mambaad.models.mambaad:build",
    "rd4ad": "mambaad.models.rd4ad:build",
    "uniad": "mambaad.models.uniad:build",
    "simplenet": "mambaad.models.simplenet:build",
    "destseg": "mambaad.models.destseg:build",
}


def list_models() -> list[str]:
    return sorted(MODELS)


def create_model(name: str, **options: object) -> nn.Module:
    """Build the model ``name`` with keyword options (unknown names list the valid ones)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    module_name, func = MODELS[name].split(":")
    builder: Callable[..., nn.Module] = getattr(importlib.import_module(module_name), func)
    return builder(**options)
