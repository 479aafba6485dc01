"""Typed configuration: defaults, YAML files, base inheritance, overrides and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mambaad.config import (
    DataConfig,
    RunConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_yaml,
    load_config,
    scaled_lr,
    split_dotted_args,
)
from mambaad.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_official_recipe() -> None:
    cfg = RunConfig()
    assert cfg.model.encoder == "resnet34" and cfg.model.scan == "hilbert" and cfg.model.directions == 8
    assert cfg.model.depths == [3, 4, 6, 3] and cfg.model.encoder_weights == "imagenet"
    assert cfg.train.base_lr == 0.005 and cfg.train.weight_decay == 1e-4 and cfg.train.betas == (0.9, 0.999)
    assert cfg.train.lr_decay_at == 0.8 and cfg.train.grad_clip == 5.0 and cfg.train.batch_size == 16
    assert cfg.data.root == [] and cfg.data.image_size == 256 and cfg.eval.score == "max"
    assert cfg.out == "runs/latest"
    # Mutable defaults must not be shared between instances.
    a, b = RunConfig(), RunConfig()
    a.model.depths.append(9)
    assert b.model.depths == [3, 4, 6, 3]


def test_scaled_lr() -> None:
    assert scaled_lr(16) == pytest.approx(0.005)
    assert scaled_lr(8) == pytest.approx(0.0025)
    assert scaled_lr(64) == pytest.approx(0.02)
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        scaled_lr(0)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.data.root, f"{path.name} names no data root"
    assert cfg.train.epochs > 0


def test_lr_follows_the_global_batch_unless_set() -> None:
    """Spec: lr = 0.005 x global batch / 16; only an explicit train.lr overrides the rule."""
    cfg = load_config(CONFIGS / "mvtec.yaml", ["train.batch_size=64"])
    assert cfg.train.lr is None and cfg.train.base_lr == pytest.approx(0.02)
    cfg = apply_overrides(cfg, ["train.lr=0.001"])
    assert cfg.train.base_lr == pytest.approx(0.001)
    assert apply_overrides(cfg, ["train.lr=null"]).train.base_lr == pytest.approx(0.02)


def test_paper_configs_share_the_recipe() -> None:
    for name in ("mvtec", "visa", "realiad", "mvtec3d", "medical", "coco"):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert cfg.train.epochs == 1000, name
        assert (cfg.train.base_lr, cfg.train.weight_decay, cfg.train.grad_clip) == (0.005, 1e-4, 5.0), name
        assert (cfg.train.batch_size, cfg.data.image_size, cfg.train.lr_decay_at) == (16, 256, 0.8), name
        assert (cfg.model.encoder, cfg.model.scan, cfg.model.directions) == ("resnet34", "hilbert", 8), name
    assert load_config(CONFIGS / "mvtec_500e.yaml").train.epochs == 500
    assert load_config(CONFIGS / "mvtec_100e.yaml").train.epochs == 100
    demo = load_config(CONFIGS / "demo.yaml")
    assert demo.model.encoder == "efficientnet_lite0" and demo.data.format == "folder"
    assert demo.train.device == "cpu"


def test_base_inheritance_is_relative_and_deep(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "parent.yaml", "train:\n  epochs: 7\n  batch_size: 4\nmodel:\n  d_state: 8\n")
    _write(tmp_path / "sub" / "mid.yaml", "base: ../parent.yaml\ntrain:\n  epochs: 9\n")
    child = _write(tmp_path / "sub" / "child.yaml", "base: mid.yaml\nmodel:\n  expand: 3\n")
    cfg = load_config(child)
    assert cfg.train.epochs == 9  # mid overrides parent
    assert cfg.train.batch_size == 4  # kept from parent: sections merge key by key
    assert (cfg.model.d_state, cfg.model.expand) == (8, 3)


def test_base_loop_and_missing_base(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "base: b.yaml\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "a.yaml")
    _write(tmp_path / "c.yaml", "base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml"):
        load_config(tmp_path / "c.yaml")


def test_overrides_dotted_lists_none_bool() -> None:
    cfg = load_config(
        None,
        [
            "train.epochs=50",
            "data.root=a,b",
            "model.depths=[2, 2, 2, 2]",
            "model.encoder_weights=none",
            "train.bf16=true",
            "train.channels_last=no",
            "train.lr=5e-3",
            "train.betas=0.8,0.99",
            "data.classes=bottle",
            "eval.topk=100",
            "out=runs/x",
        ],
    )
    assert cfg.train.epochs == 50 and isinstance(cfg.train.epochs, int)
    assert cfg.data.root == ["a", "b"]
    assert cfg.model.depths == [2, 2, 2, 2]
    assert cfg.model.encoder_weights is None
    assert cfg.train.bf16 is True and cfg.train.channels_last is False
    assert cfg.train.lr == pytest.approx(0.005)
    assert cfg.train.betas == (0.8, 0.99)
    assert cfg.data.classes == ["bottle"]
    assert cfg.eval.topk == 100
    assert cfg.out == "runs/x"
    # Overrides return a copy: the input is untouched.
    base = RunConfig()
    apply_overrides(base, ["train.epochs=3"])
    assert base.train.epochs == 100


def test_eval_bf16_follows_train_bf16_unless_set() -> None:
    assert not RunConfig().eval_bf16
    assert load_config(None, ["train.bf16=true"]).eval_bf16
    assert not load_config(None, ["train.bf16=true", "eval.bf16=false"]).eval_bf16
    assert load_config(None, ["eval.bf16=yes"]).eval_bf16
    assert load_config(None, ["eval.bf16=true", "eval.bf16=null"]).eval.bf16 is None


def test_overrides_apply_on_top_of_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", "train:\n  epochs: 7\ndata:\n  root: one\n")
    cfg = load_config(path, ["train.epochs=8"])
    assert cfg.train.epochs == 8
    assert cfg.data.root == ["one"]  # a single string becomes a one-element list


def test_split_dotted_args_both_forms() -> None:
    argv = ["fit", "configs/mvtec.yaml", "--train.epochs", "50", "--data.root=a,b", "--out", "x", "-v"]
    rest, overrides = split_dotted_args(argv)
    assert rest == ["fit", "configs/mvtec.yaml", "--out", "x", "-v"]
    assert overrides == ["train.epochs=50", "data.root=a,b"]
    # A bare bool flag means true, whether followed by another option or by nothing.
    rest, overrides = split_dotted_args(["--train.bf16", "--train.seed", "3", "--train.tensorboard"])
    assert rest == [] and overrides == ["train.bf16=true", "train.seed=3", "train.tensorboard=true"]
    assert load_config(None, overrides).train.seed == 3
    with pytest.raises(ConfigError, match=r"--train\.epochs needs a value"):
        split_dotted_args(["--train.epochs"])


def test_unknown_key_names_key_file_and_suggestion(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.yaml", "train:\n  epoch: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "train.epoch" in msg and "bad.yaml" in msg and "did you mean 'train.epochs'" in msg
    assert "\n" not in msg
    # Right key in the wrong section.
    with pytest.raises(ConfigError, match=r"did you mean 'data\.image_size'"):
        load_config(None, ["train.image_size=128"])
    # Unknown section.
    with pytest.raises(ConfigError, match=r"'trian\.epochs'.*did you mean 'train\.epochs'"):
        load_config(None, ["trian.epochs=3"])
    _write(tmp_path / "top.yaml", "optimizer: adam\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'optimizer'.*top\.yaml"):
        load_config(tmp_path / "top.yaml")


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("train.epochs=ten", r"train\.epochs.*must be int.*'ten'"),
        ("train.epochs=2.5", r"train\.epochs.*must be int"),
        ("train.bf16=maybe", r"train\.bf16.*must be bool"),
        ("train.lr=fast", r"train\.lr.*must be float"),
        ("train.betas=0.9", r"train\.betas.*2 values"),
        ("model.depths=a,b", r"model\.depths.*must be int"),
        ("model.depths=[3]", r"model\.depths must list 4 stage depths"),
        ("model.depths=[2,2,2,2,2]", r"model\.depths must list 4 stage depths"),
        ("train.epochs=0", r"train\.epochs must be > 0"),
        ("data.holdout_fraction=1.5", r"data\.holdout_fraction must be in \[0, 1\)"),
        ("data.crop_size=300", r"data\.crop_size"),
        ("train.epochs", r"section\.key=value"),
    ],
)
def test_type_and_range_errors(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, [override])


def test_yaml_type_errors_name_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.yaml", "train:\n  bf16: 3\n")
    with pytest.raises(ConfigError, match=r"train\.bf16 in .*t\.yaml must be bool"):
        load_config(path)
    path = _write(tmp_path / "r.yaml", "train:\n  epochs: -1\n")
    with pytest.raises(ConfigError, match=r"train\.epochs must be > 0.*r\.yaml"):
        load_config(path)
    path = _write(tmp_path / "s.yaml", "train: 5\n")
    with pytest.raises(ConfigError, match=r"section 'train'.*mapping"):
        load_config(path)
    path = _write(tmp_path / "y.yaml", "train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_string_floats_are_parsed(tmp_path: Path) -> None:
    # PyYAML reads 5e-3 (no dot) as a string; the schema still gets a float.
    path = _write(tmp_path / "f.yaml", "train:\n  lr: 5e-3\n  weight_decay: 1e-4\n")
    cfg = load_config(path)
    assert cfg.train.lr == pytest.approx(0.005) and isinstance(cfg.train.lr, float)
    assert cfg.train.weight_decay == pytest.approx(1e-4)


def test_dict_round_trip_and_json_safe() -> None:
    cfg = load_config(CONFIGS / "mvtec.yaml", ["model.encoder_weights=null", "data.classes=a,b"])
    d = config_to_dict(cfg)
    assert d["train"]["betas"] == [0.9, 0.999]  # tuples become lists
    again = config_from_dict(json.loads(json.dumps(d)))
    assert again == cfg
    # Missing keys take defaults; unknown keys raise unless strict=False.
    assert config_from_dict({"train": {"epochs": 3}}).train.batch_size == 16
    with pytest.raises(ConfigError, match=r"train\.future_option"):
        config_from_dict({"train": {"future_option": 1}})
    assert config_from_dict({"train": {"future_option": 1}, "new": {}}, strict=False) == RunConfig()


def test_dump_yaml_round_trip(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "demo.yaml", ["train.epochs=3"])
    path = dump_yaml(cfg, tmp_path / "nested" / "resolved.yaml")
    assert load_config(path) == cfg


def test_direct_construction_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"data\.image_size"):
        DataConfig(image_size=0)
