"""The torch Dataset over a sample table: thin on purpose, all layout logic lives in the readers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mambaad.data.imageio import load_mask, load_rgb
from mambaad.data.sample import Sample, class_has_masks
from mambaad.data.transforms import image_to_tensor, mask_to_tensor, normalize_rgb, resize_crop
from mambaad.errors import ConfigError

CACHE_RAM_FRACTION = 0.25  # ``cache=None`` keeps the images in memory when they take at most this of the RAM


def cache_bytes(n_images: int, crop_size: int) -> int:
    """Memory of ``n_images`` resized images kept as uint8 RGB."""
    return n_images * crop_size * crop_size * 3


def should_cache(setting: bool | None, n_images: int, crop_size: int, copies: int = 1) -> bool:
    """``data.cache_images``: True / False as given; None when ``copies`` caches of the uint8 images (one
    per training process on this machine) fit in :data:`CACHE_RAM_FRACTION` of the physical memory."""
    if setting is not None:
        return setting
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: no cache unless asked for
        return False
    return copies * cache_bytes(n_images, crop_size) <= CACHE_RAM_FRACTION * ram


def _decode_one(sample: Sample, image_size: int, crop_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    img = load_rgb(sample.image_path)
    return np.asarray(resize_crop(img, image_size, crop_size)), img.size


def decode_images(
    samples: Sequence[Sample], image_size: int, crop_size: int, threads: int | None = None
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Every image decoded, resized and cropped once: (N, S, S, 3) uint8 and the original (W, H) sizes.

    Decoding a 1024 px PNG costs ~30 ms on one core, six times its resize and normalization; a run of
    hundreds of epochs re-read every image each epoch. Threads decode in parallel (PIL releases the GIL while decoding and
    resizing). Data-loader workers forked later share the tensor's memory (it is never written).
    """
    out = torch.empty(len(samples), crop_size, crop_size, 3, dtype=torch.uint8)
    sizes: list[tuple[int, int]] = [(0, 0)] * len(samples)
    with ThreadPoolExecutor(max_workers=threads or min(16, os.cpu_count() or 1)) as pool:
        results = pool.map(lambda s: _decode_one(s, image_size, crop_size), samples)
        for i, (rgb, size) in enumerate(results):
            out[i].numpy()[...] = rgb
            sizes[i] = size
    return out, sizes


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
        cache: Decode, resize and crop every image once, now (:func:`decode_images`), and keep them as
            uint8 in memory: items are then the same tensors without touching the files.

    Raises:
        DataError: (on item access, or at construction with ``cache``) unreadable image or mask, or a mask
            whose size differs from its image.
    """

    def __init__(
        self, samples: Sequence[Sample], image_size: int = 256, crop_size: int = 256, cache: bool = False
    ) -> None:
        if image_size <= 0 or crop_size <= 0 or crop_size > image_size:
            raise ConfigError(
                f"image_size/crop_size: need 0 < crop_size <= image_size, got {image_size}/{crop_size}"
            )
        self.samples = list(samples)
        self.image_size = image_size
        self.crop_size = crop_size
        self.class_has_masks = class_has_masks(self.samples)
        self._images: torch.Tensor | None = None  # (N, S, S, 3) uint8 with ``cache``
        self._sizes: list[tuple[int, int]] = []
        if cache:
            self._images, self._sizes = decode_images(self.samples, image_size, crop_size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        if self._images is not None:
            image = normalize_rgb(self._images[index].numpy())  # (3, S, S)
            size = self._sizes[index]
        else:
            img = load_rgb(s.image_path)
            image = image_to_tensor(img, self.image_size, self.crop_size)  # (3, S, S)
            size = img.size
        has_mask = self.class_has_masks.get(s.cls, False) and (s.label == 0 or s.mask_path is not None)
        if s.label == 1 and s.mask_path is not None:
            mask = mask_to_tensor(load_mask(s.mask_path, size), self.image_size, self.crop_size)
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
