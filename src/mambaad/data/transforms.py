"""Spec §7 pre-processing: square bilinear resize -> center crop -> [0, 1] tensor -> ImageNet normalization.

Masks get the same geometry (bilinear resize of the 0/255 mask, center crop) and are then binarized at
0.5, exactly as ADer's trainers do, so our pixel metrics are comparable with the published numbers.
Plain PIL + numpy + torch: the same function serves training, evaluation and ``predict``.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def resize_crop(img: Image.Image, image_size: int, crop_size: int) -> Image.Image:
    """Resize to ``image_size`` x ``image_size`` (bilinear, aspect ratio NOT kept), then center-crop."""
    img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    if crop_size == image_size:
        return img
    left = round((image_size - crop_size) / 2.0)  # as torchvision center_crop
    return img.crop((left, left, left + crop_size, left + crop_size))


def image_to_tensor(img: Image.Image, image_size: int = 256, crop_size: int = 256) -> torch.Tensor:
    """RGB PIL image -> normalized ``(3, S, S)`` float32 tensor, S = crop_size."""
    return normalize_rgb(np.asarray(resize_crop(img, image_size, crop_size)))


def normalize_rgb(rgb: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 RGB -> ImageNet-normalized ``(3, S, S)`` float32 tensor (the second half of
    :func:`image_to_tensor`, for images kept resized in memory)."""
    arr = np.asarray(rgb, dtype=np.float32) / 255.0  # (S, S, 3)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    arr = (arr - mean) / std
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (3, S, S)


def mask_to_tensor(mask: np.ndarray, image_size: int = 256, crop_size: int = 256) -> torch.Tensor:
    """Boolean ``(H, W)`` mask -> ``(1, S, S)`` float32 tensor in {0, 1} (bilinear resize, crop, > 0.5)."""
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    img = resize_crop(img, image_size, crop_size)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy((arr > 0.5).astype(np.float32))[None]  # (1, S, S)


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalization (for visualizations): ``(..., 3, H, W)`` -> values in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * std + mean).clamp(0.0, 1.0)
