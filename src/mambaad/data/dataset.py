"""The torch Dataset over a sample table: thin on purpose, all layout logic lives in the readers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from mambaad.data.imageio import load_mask, load_rgb
from mambaad.data.sample import Sample, class_has_masks
from mambaad.data.transforms import image_to_tensor, mask_to_tensor
from mambaad.errors import ConfigError


class AnomalyDataset(Dataset):
    """Images (and masks) of any reader's samples, pre-processed as in spec §7.

    Each item is a dict: ``image`` (3, S, S) float ImageNet-normalized, ``mask`` (1, S, S) float in {0, 1}
    (zeros for normal images and label-only classes), ``label`` int, ``cls`` str, ``defect`` str,
    ``path`` str, ``has_mask`` bool (False when the mask is unknown, i.e. the class has no masks or this
    anomalous image lacks one: leave such items out of pixel metrics).

    Args:
        samples: Output of a reader (any mix of classes and data sets).
        image_size: Square resize size.
        crop_size: Center crop size S (<= image_size).

    Raises:
        DataError: (on item access) unreadable image or mask, or a mask whose size differs from its image.
    """

    def __init__(self, samples: Sequence[Sample], image_size: int = 256, crop_size: int = 256) -> None:
        if image_size <= 0 or crop_size <= 0 or crop_size > image_size:
            raise ConfigError(
                f"image_size/crop_size: need 0 < crop_size <= image_size, got {image_size}/{crop_size}"
            )
        self.samples = list(samples)
        self.image_size = image_size
        self.crop_size = crop_size
        self.class_has_masks = class_has_masks(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        img = load_rgb(s.image_path)
        image = image_to_tensor(img, self.image_size, self.crop_size)  # (3, S, S)
        has_mask = self.class_has_masks.get(s.cls, False) and (s.label == 0 or s.mask_path is not None)
        if s.label == 1 and s.mask_path is not None:
            mask = mask_to_tensor(load_mask(s.mask_path, img.size), self.image_size, self.crop_size)
        else:
            mask = torch.zeros(1, self.crop_size, self.crop_size)  # (1, S, S)
        return {
            "image": image,
            "mask": mask,
            "label": s.label,
            "cls": s.cls,
            "defect": s.defect,
            "path": str(s.image_path),
            "has_mask": bool(has_mask),
        }
