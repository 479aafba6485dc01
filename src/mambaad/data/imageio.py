"""Reading images and masks from disk, with one-line errors for anything unreadable.

Every PIL mode is turned into 8-bit RGB the same way for training, testing and export, so a grey
MVTec class, a palette PNG and a 16-bit TIFF all reach the network as comparable inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mambaad.errors import DataError

# PIL's ImageFile.LOAD_TRUNCATED_IMAGES stays False: a truncated file must fail loudly, never decode as a
# half-grey image.


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image file (decoding is what reveals truncation).

    Raises:
        DataError: The file is missing, not an image, or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({_one_line(exc)})") from exc


def _wide_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Map a 16/32-bit or float grey array to 0..255 by its value range instead of clipping.

    ``I;16*`` uses the full 16-bit range (65535 -> 255) so that all images of a set share one scale.
    ``I`` (32-bit int) uses 8 or 16 bits when the values fit, else the image's own min..max.
    ``F`` uses [0, 1] or [0, 255] when the values fit, else the image's own min..max.
    """
    a = arr.astype(np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        scale_lo, scale_hi = 0.0, 65535.0
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        scale_lo, scale_hi = 0.0, 1.0
    elif lo >= 0.0 and hi <= 255.0:
        scale_lo, scale_hi = 0.0, 255.0
    elif mode == "I" and lo >= 0.0 and hi <= 65535.0:
        scale_lo, scale_hi = 0.0, 65535.0
    else:
        scale_lo, scale_hi = lo, max(hi, lo + 1e-12)
    out = (a - scale_lo) * (255.0 / (scale_hi - scale_lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image, path: Path | str = "<image>") -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    Grey, grey+alpha, palette, CMYK and YCbCr go through PIL (alpha is dropped, as in ADer's
    ``convert('RGB')``). 16/32-bit integer and float images are rescaled by :func:`_wide_to_uint8`,
    because PIL's own conversion clips them at 255.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        grey = _wide_to_uint8(np.asarray(img), mode)
        return Image.fromarray(grey).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot convert image mode {mode} to RGB ({_one_line(exc)})") from exc


def load_rgb(path: Path) -> Image.Image:
    """Open an image and return it as 8-bit RGB (see :func:`to_rgb`)."""
    return to_rgb(open_image(path), path)


def mask_to_bool(img: Image.Image) -> np.ndarray:
    """Binarize a mask: any non-zero pixel is anomalous (VisA, MVTec-3D and COCO masks are not plain 0/255).

    Palette masks are judged by their index (index 0 = background), colour masks by any colour channel
    (alpha ignored). Returns ``(H, W)`` bool.
    """
    arr = np.asarray(img)
    if img.mode in ("RGB", "RGBA", "CMYK", "YCbCr") and arr.ndim == 3:
        return arr[..., :3].max(axis=-1) > 0
    if img.mode == "LA" and arr.ndim == 3:
        return arr[..., 0] > 0
    return arr > 0 if arr.ndim == 2 else arr.max(axis=-1) > 0


def load_mask(path: Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file as ``(H, W)`` bool.

    Args:
        path: Mask file.
        expected_size: ``(W, H)`` of its image; a different size raises DataError (a mask for a
            different image, or a resized copy, would give wrong pixel metrics).
    """
    img = open_image(path)
    if expected_size is not None:
        check_mask_size(path, img.size, expected_size)
    return mask_to_bool(img)


def check_mask_size(path: Path | str, mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    """A mask of another (W, H) than its image raises DataError naming the mask."""
    if tuple(mask_size) != tuple(image_size):
        raise DataError(
            f"{path}: mask size {mask_size[0]}x{mask_size[1]} differs from its image size "
            f"{image_size[0]}x{image_size[1]}"
        )
