"""DeSTSeg: a denoising student and a segmentation head on teacher/student agreement (Zhang et al., CVPR 2023).

Paper: "DeSTSeg: Segmentation Guided Denoising Student-Teacher for Anomaly Detection", §3 (Fig. 2):

    synthetic anomalies (§3.1)  DRAEM-style Perlin-mask blends made from the normal batch
                                (:mod:`mambaad.models.synthetic_anomalies`; the paper takes textures from DTD)
    teacher T (§3.2)            frozen ImageNet ResNet18, maps at strides 4/8/16 (``encoder=``)
    denoising student S (§3.2)  an encoder-decoder trained from scratch: a ResNet18-style encoder (strides
                                4..32, random init, ``student_encoder=``) and a reversed decoder (2x2 stride-2
                                transposed conv + residual blocks per scale) producing maps shaped like the
                                teacher's. It sees the corrupted image and must reproduce the teacher's features
                                of the clean image: loss = sum over scales of mean_{h,w} (1 - cos)
    segmentation head (§3.3)    input: per scale the element-wise product of the channel-normalised teacher
                                and student maps of the corrupted image, upsampled to stride 4 and concatenated;
                                two residual blocks, an ASPP module, a 1x1 conv -> one logit per stride-4 pixel;
                                loss = focal (gamma 4) + L1 on the sigmoid against the synthetic mask
                                (bilinearly resized to stride 4, binarised at 0.5)
    map / score (§3.4)          sigmoid of the segmentation output, bilinearly upsampled to the input (then the
                                benchmark protocol's Gaussian, sigma 4; 0 turns it off); image score = mean of the
                                top ``score_topk`` = 100 pixels

Training schedule (``schedule``). ``"two_step"`` (the default) is the paper's: for the first
``student_fraction`` of the run's optimizer steps (default 0.2, the release's 1000 of 5000) only the student
trains, on its denoising loss (the head is not run); from then on only the segmentation head trains, on
focal + L1, with the student frozen (eval mode, run without gradient). The model learns where the run stands
from the engine's :meth:`DeSTSeg.set_train_progress` hook, called before every step with the global step, so a
resumed run continues in the right step; the frozen part gets no gradient at all, so the optimizer (SGD with
momentum and weight decay) leaves its weights untouched. A loop that never calls the hook stays in the
student step. ``"joint"`` trains both at once with one loss, ``student_loss + seg_loss``, where the head
gets *detached* teacher/student features: each part gets only the gradient of its own step, but the steps
run concurrently and the head learns on a still-moving student. Each batch is corrupted once (each image
with probability ``anomaly_prob``) and feeds the loss(es).

Recipe in :data:`RECIPE` (``configs/destseg.yaml``): SGD, momentum 0.9, weight decay 1e-4, constant learning
rates 0.4 for the student, 0.1 for the segmentation head's residual blocks and 0.01 for its ASPP + output
layer (:meth:`DeSTSeg.param_groups` keeps these ratios for any ``train.lr``), batch 32, 256 px, as in the
authors' release. The paper trains one class for 5000 iterations (the student alone for the first 1000);
here all classes train at once for ``epochs`` epochs (a budget, not the paper's), the student alone for the
first ``student_fraction`` of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambaad.errors import ConfigError, MambaADError
from mambaad.models.anomaly_map import cosine_distance_maps, gaussian_blur, image_scores
from mambaad.models.encoder import Encoder
from mambaad.models.rd4ad import ReverseStage, conv_bn_relu
from mambaad.models.recipes import part_groups
from mambaad.models.synthetic_anomalies import synthesize_anomalies

RECIPE = {
    "optimizer": "sgd",
    "lr": 0.4,  # the student's; the segmentation head's parts get their ratios through param_groups
    "group_lrs": {"student": 0.4, "seg_residual": 0.1, "seg_head": 0.01},
    "momentum": 0.9,
    "betas": (0.9, 0.999),  # unused by SGD
    "weight_decay": 1e-4,
    "lr_decay_at": 1.0,
    "lr_decay": 1.0,  # constant learning rate
    "grad_clip": 0.0,
    "epochs": 200,
    "batch_size": 32,
    "image_size": 256,
}

INPUT_MULTIPLE = 32  # student encoder stride 32
SCHEDULES = ("two_step", "joint")


class StudentNet(nn.Module):
    """Denoising student: random-init timm encoder (strides 4..32) -> reversed decoder -> 3 teacher-shaped maps."""

    def __init__(self, name: str, channels: list[int], blocks: tuple[int, ...]) -> None:
        super().__init__()
        try:
            probe = timm.create_model(name, features_only=True, pretrained=False)
        except Exception as err:
            raise ConfigError(f"unknown or unsupported student_encoder {name!r} ({err})") from None
        reductions = probe.feature_info.reduction()
        if 32 not in reductions:
            raise ConfigError(f"student_encoder {name!r} has no stride-32 feature map")
        self.encoder = timm.create_model(
            name, features_only=True, out_indices=[reductions.index(32)], pretrained=False
        )
        deep = self.encoder.feature_info.channels()[-1]
        if len(blocks) != len(channels):
            raise ConfigError(f"decoder_blocks needs {len(channels)} numbers, got {list(blocks)}")
        stages, prev = [], deep
        for c, n in zip(reversed(channels), reversed(blocks)):
            stages.append(ReverseStage(prev, c, n))
            prev = c
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:  # (B, 3, H, W) -> shallow-first 3 x (B, C_i, H/s_i, W/s_i)
        y = self.encoder(x)[-1]  # (B, C, H/32, W/32)
        outs = []
        for stage in self.stages:
            y = stage(y)
            outs.append(y)
        return outs[::-1]


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN with a (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(c_in, c_out),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = (
            nn.Identity()
            if c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3): 1x1, three dilated 3x3 and a global-pool branch."""

    def __init__(self, c_in: int, c_out: int, rates: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        branches = [conv_bn_relu(c_in, c_out, 1)]
        for r in rates:
            branches.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c_out, 3, padding=r, dilation=r, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                )
            )
        self.branches = nn.ModuleList(branches)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_in, c_out, 1), nn.ReLU(inplace=True))
        self.project = conv_bn_relu((len(rates) + 2) * c_out, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))


class SegmentationHead(nn.Module):
    """Concatenated agreement features (stride 4) -> one anomaly logit per stride-4 pixel."""

    def __init__(self, c_in: int, width: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(BasicBlock(c_in, width), BasicBlock(width, width), ASPP(width, width))
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, h, w) -> (B, 1, h, w) logits
        return self.out(self.body(x))


def agreement_features(teacher: list[Tensor], student: list[Tensor]) -> Tensor:
    """Per scale normalised(T) * normalised(S), upsampled to the first scale, concatenated: (B, sum C, h, w)."""
    size = teacher[0].shape[-2:]
    out = []
    for t, s in zip(teacher, student):
        f = F.normalize(t, dim=1) * F.normalize(s, dim=1)
        if f.shape[-2:] != size:
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        out.append(f)
    return torch.cat(out, dim=1)


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 4.0) -> Tensor:
    """Binary focal loss, mean over pixels: -(1 - p_t)^gamma log p_t."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    return ((1 - p_t) ** gamma * ce).mean()


def student_steps(total_steps: int, fraction: float) -> int:
    """Optimizer steps of the two-step schedule's student step: ``round(fraction * total_steps)``.

    Clamped so that each step gets at least one optimizer step when the run has two or more (a tiny run
    still trains both parts); a run of one step trains only the student.
    """
    n = round(fraction * total_steps)
    if total_steps < 2:
        return total_steps
    return min(max(n, 1), total_steps - 1)


@dataclass
class DeSTSegConfig:
    encoder: str = "resnet18"
    student_encoder: str = "resnet18"
    decoder_blocks: tuple[int, ...] = (2, 2, 2)  # per scale, shallow to deep
    seg_width: int = 128
    anomaly_prob: float = 0.5
    focal_gamma: float = 4.0
    gaussian_sigma: float = 4.0
    score_topk: int | None = 100
    schedule: str = "two_step"  # "two_step" (paper: student, then head with the student frozen) or "joint"
    student_fraction: float = 0.2  # two_step: share of the run's optimizer steps that train the student


class DeSTSeg(nn.Module):
    """Frozen teacher + denoising student + segmentation head (see the module docstring)."""

    RECIPE = RECIPE

    def __init__(self, config: DeSTSegConfig, encoder_weights: str | Path | None = None) -> None:
        super().__init__()
        if not 0.0 <= config.anomaly_prob <= 1.0:
            raise ConfigError(f"anomaly_prob must be in [0, 1], got {config.anomaly_prob}")
        if config.schedule not in SCHEDULES:
            raise ConfigError(
                f"destseg option schedule must be 'two_step' or 'joint', got {config.schedule!r}"
            )
        frac = config.student_fraction
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 < frac < 1.0:
            raise ConfigError(f"destseg option student_fraction must be a number in (0, 1), got {frac!r}")
        self.config = cfg = config
        self.encoder = Encoder(cfg.encoder, encoder_weights)
        self.student = StudentNet(cfg.student_encoder, self.encoder.channels, tuple(cfg.decoder_blocks))
        self.segmentation = SegmentationHead(sum(self.encoder.channels), cfg.seg_width)
        self._phase = "joint" if cfg.schedule == "joint" else "student"

    @property
    def phase(self) -> str:
        """What ``training_loss`` trains now: ``"student"``, ``"head"`` (two_step) or ``"joint"``."""
        return self._phase

    def set_train_progress(self, step: int, total_steps: int) -> None:
        """Engine hook, called before optimizer step ``step`` (0-based, global) of ``total_steps``.

        Picks the two-step schedule's phase; the part that does not train is put in eval mode (its
        BatchNorm statistics stay as they are). No-op for ``schedule="joint"``.
        """
        if self.config.schedule == "joint":
            return
        n_student = student_steps(total_steps, self.config.student_fraction)
        self._phase = "student" if step < n_student else "head"
        if self.training:
            self._set_part_modes()

    def _set_part_modes(self) -> None:
        """In training mode: the part the phase trains in train mode, the other in eval mode."""
        self.student.train(self._phase != "head")
        self.segmentation.train(self._phase != "student")

    def train(self, mode: bool = True) -> DeSTSeg:
        super().train(mode)
        self.encoder.eval()
        if mode:
            self._set_part_modes()
        return self

    def _check(self, x: Tensor) -> None:
        h, w = x.shape[-2:]
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
            raise MambaADError(f"input size {h}x{w} must be a multiple of {INPUT_MULTIPLE} on both sides")

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """(B, 3, H, W) -> (teacher maps, student maps, segmentation logits (B, 1, H/4, W/4))."""
        self._check(x)
        teacher, student = self.encoder(x), self.student(x)
        logits = self.segmentation(agreement_features(teacher, student))
        return teacher, student, logits

    def training_loss(self, images: Tensor) -> Tensor:
        """The current phase's loss on one synthetically corrupted copy of the batch.

        ``student``: denoising loss only; ``head``: focal + L1 only, the student run without gradient;
        ``joint``: their sum, the head on detached student features.
        """
        self._check(images)
        phase = self._phase
        corrupted, masks = synthesize_anomalies(images, self.config.anomaly_prob)
        if phase == "head":
            with torch.no_grad():
                student = self.student(corrupted)
        else:
            clean_teacher = self.encoder(images)
            student = self.student(corrupted)
            student_loss = sum(m.mean() for m in cosine_distance_maps(clean_teacher, student))
            if phase == "student":
                return student_loss
        teacher = self.encoder(corrupted)
        logits = self.segmentation(agreement_features(teacher, [s.detach() for s in student]))
        target = (
            F.interpolate(masks, size=logits.shape[-2:], mode="bilinear", align_corners=False) > 0.5
        ).float()
        seg_loss = (
            focal_loss(logits, target, self.config.focal_gamma)
            + (torch.sigmoid(logits) - target).abs().mean()
        )
        return seg_loss if phase == "head" else student_loss + seg_loss

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Student and segmentation head; the teacher is frozen."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def param_groups(self, lr: float | None = None, weight_decay: float | None = None) -> list[dict]:
        """Student, head residual blocks, head ASPP + output: the paper's 0.4 : 0.1 : 0.01 learning rates.

        ``None`` takes the recipe's value (lr 0.4, weight decay 1e-4).
        """
        lr = RECIPE["lr"] if lr is None else lr
        wd = RECIPE["weight_decay"] if weight_decay is None else weight_decay
        body = self.segmentation.body  # BasicBlock, BasicBlock, ASPP
        parts = {
            "student": self.student.parameters(),
            "seg_residual": [*body[0].parameters(), *body[1].parameters()],
            "seg_head": [*body[2].parameters(), *self.segmentation.out.parameters()],
        }
        return part_groups(parts, RECIPE, lr, wd)

    @torch.no_grad()
    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) -> maps (B, H, W) in [0, 1] (before smoothing) and image scores (B,)."""
        _, _, logits = self(x)
        maps = F.interpolate(
            torch.sigmoid(logits), size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False
        )
        maps = gaussian_blur(maps[:, 0], self.config.gaussian_sigma)
        return maps, image_scores(maps, self.config.score_topk)

    def config_dict(self) -> dict:
        return {"model": "destseg", **asdict(self.config)}


def build(encoder: str = "resnet18", encoder_weights: str | Path | None = None, **options: object) -> DeSTSeg:
    """Registry entry. Options: student_encoder, decoder_blocks, seg_width, anomaly_prob, focal_gamma,
    gaussian_sigma, score_topk, schedule, student_fraction."""
    try:
        config = DeSTSegConfig(encoder=encoder, **options)  # type: ignore[arg-type]
    except TypeError as err:
        raise ConfigError(f"destseg: {err}") from None
    config.decoder_blocks = tuple(config.decoder_blocks)
    return DeSTSeg(config, encoder_weights)
