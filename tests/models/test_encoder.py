"""The frozen encoder: feature strides, frozen state, and every way of getting its weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from skimage import data as skdata

from mambaad.errors import CheckpointError, ConfigError
from mambaad.models.encoder import Encoder, pretrained_classifier

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def imagenet_batch(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    return (x - MEAN) / STD


def test_lite0_weights_are_imagenet() -> None:
    """The offline EfficientNet-Lite0 checkpoint recognises a cat and an espresso."""
    model = pretrained_classifier("efficientnet_lite0", "imagenet")
    with torch.no_grad():
        cat = model(imagenet_batch(skdata.chelsea())).topk(5).indices[0].tolist()
        coffee = model(imagenet_batch(skdata.coffee())).topk(5).indices[0].tolist()
    assert set(cat) & {281, 282, 283, 284, 285}, cat
    assert set(coffee) & {967, 968, 504}, coffee


def test_lite0_encoder_gets_the_same_weights() -> None:
    enc = Encoder("efficientnet_lite0", "imagenet")
    full = pretrained_classifier("efficientnet_lite0", "imagenet").state_dict()
    for key, value in enc.body.state_dict().items():
        assert torch.equal(value, full[key]), key


@pytest.mark.parametrize("name", ["resnet34", "efficientnet_lite0", "resnet18"])
def test_strides_and_channels(name: str) -> None:
    enc = Encoder(name)
    feats = enc(torch.randn(1, 3, 64, 96))
    assert [f.shape[-2:] for f in feats] == [(16, 24), (8, 12), (4, 6)]
    assert [f.shape[1] for f in feats] == enc.channels


def test_encoder_is_frozen_and_stays_in_eval() -> None:
    enc = Encoder("resnet18")
    enc.train()
    assert not enc.training and not any(m.training for m in enc.modules())
    assert not any(p.requires_grad for p in enc.parameters())
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    enc(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())  # BN stats unchanged


@pytest.mark.parametrize("name", ["resnet34", "efficientnet_lite0"])
def test_inference_path_under_cuda_autocast(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference under CUDA autocast runs the stages channels-last and returns fp32 features: the plain
    forward's values. Encoders without timm's return_layers (EfficientNet) and training keep the plain path."""
    enc = Encoder(name)
    x = torch.randn(2, 3, 64, 64)
    plain = enc(x)
    monkeypatch.setattr("mambaad.models.encoder._cuda_autocast", lambda x: True)  # no GPU here
    with torch.no_grad():
        fast = enc(x)
    with torch.enable_grad():
        trained = enc(x)
    for a, b, c in zip(fast, plain, trained):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        assert a.is_contiguous(memory_format=torch.channels_last) == (name == "resnet34")
        assert not c.is_contiguous(memory_format=torch.channels_last)


def test_weights_from_a_local_file(tmp_path: Path) -> None:
    source = timm.create_model("resnet18", pretrained=False)
    for fmt in ("pth", "safetensors"):
        path = tmp_path / f"w.{fmt}"
        state = {k: v.contiguous() for k, v in source.state_dict().items()}
        torch.save(state, path) if fmt == "pth" else save_file(state, str(path))
        enc = Encoder("resnet18", path)
        for key, value in enc.body.state_dict().items():
            assert torch.equal(value, state[key]), (fmt, key)


def test_bad_weight_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        Encoder("resnet18", tmp_path / "missing.pth")
    good = tmp_path / "w.pth"
    torch.save(timm.create_model("resnet18").state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:10_000])
    with pytest.raises(CheckpointError, match=r"truncated\.pth"):
        Encoder("resnet18", truncated)
    wrong = tmp_path / "wrong.pth"
    torch.save(timm.create_model("resnet50").state_dict(), wrong)
    with pytest.raises(CheckpointError, match="wrong shape"):
        Encoder("resnet18", wrong)


def test_unknown_encoder() -> None:
    with pytest.raises(ConfigError, match="no_such_net"):
        Encoder("no_such_net")


def test_imagenet_download_path_reads_the_hub_cache(tmp_path: Path) -> None:
    """'imagenet' for resnet34 goes through timm's real hub download; here it finds a local cache."""
    repo = tmp_path / "hub" / "models--timm--resnet34.bt_in1k"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    torch.manual_seed(7)
    state = {k: v.contiguous() for k, v in timm.create_model("resnet34").state_dict().items()}
    save_file(state, str(snapshot / "model.safetensors"))
    expected = float(sum(v.double().sum() for k, v in state.items() if k.startswith("layer3")))
    code = (
        "from mambaad.models.encoder import Encoder;"
        "e = Encoder('resnet34', 'imagenet');"
        "print(float(sum(v.double().sum() for k, v in e.body.state_dict().items() if k.startswith('layer3'))))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert float(out.stdout.strip()) == pytest.approx(expected, rel=1e-12)


def test_imagenet_download_failure_is_one_line(tmp_path: Path) -> None:
    code = "from mambaad.models.encoder import Encoder; Encoder('resnet34', 'imagenet')"
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "--encoder-weights PATH" in out.stderr
