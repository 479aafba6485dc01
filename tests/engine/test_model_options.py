"""``model.options``: a baseline's own settings from YAML or ``--model.options.NAME VALUE``."""

from __future__ import annotations

from pathlib import Path

import pytest

from mambaad.config import apply_overrides, load_config, split_dotted_args
from mambaad.engine.trainer import build_model
from mambaad.errors import ConfigError

TINY = ["model.encoder=efficientnet_lite0", "model.encoder_weights=none"]


def test_cli_option_is_typed_like_yaml() -> None:
    rest, overrides = split_dotted_args(
        ["train", "--model.options.noise_std", "0.05", "--model.options.layers=[1]"]
    )
    assert rest == ["train"]
    cfg = load_config(None, ["model.model=simplenet", *TINY, *overrides])
    assert cfg.model.options == {"noise_std": 0.05, "layers": [1]}
    model = build_model(cfg)
    assert model.config.noise_std == 0.05 and tuple(model.config.layers) == (1,)


def test_yaml_options_reach_the_builder(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  model: simplenet\n  options:\n    standardize: false\n    patch_size: 5\n")
    cfg = load_config(path, TINY)
    model = build_model(cfg)
    assert model.config.standardize is False and model.config.patch_size == 5


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.model=simplenet", *TINY, "model.options.no_such_thing=1"])
    with pytest.raises(ConfigError, match="no_such_thing") as err:
        build_model(cfg)
    assert "\n" not in str(err.value)
    mamba = load_config(None, [*TINY, "model.depths=[1,1,1,1]", "model.options.bogus=2"])
    with pytest.raises(ConfigError, match="bogus"):
        build_model(mamba)
    with pytest.raises(ConfigError, match=r"model\.options\.encoder"):
        build_model(apply_overrides(cfg, ["model.options={}", "model.options.encoder=resnet18"]))
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  options: 5\n")
    with pytest.raises(ConfigError, match=r"model\.options.*mapping"):
        load_config(path)
