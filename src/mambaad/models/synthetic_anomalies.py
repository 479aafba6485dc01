"""Synthetic anomalies made on the fly from a batch of normal images (DRAEM-style, used by DeSTSeg).

DRAEM (Zavrtanik et al., ICCV 2021, §3.3) pastes texture into a normal image through a thresholded
Perlin-noise mask:

    I_a = (1 - M) * I + (1 - beta) * (M * A) + beta * (M * I),   beta ~ U(0, beta_max)

where ``A`` is an unrelated texture. DRAEM takes it from the DTD data set; we have no such data set
here, so ``A`` is another image of the same batch (rolled by one, flipped both ways) or Gaussian noise,
chosen at random. Everything draws from torch's default RNG, so a seeded run is reproducible.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _fade(t: Tensor) -> Tensor:
    """Perlin's quintic fade curve 6t^5 - 15t^4 + 10t^3 (smooth at the lattice points)."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(
    height: int, width: int, res_y: int, res_x: int, device: torch.device | None = None
) -> Tensor:
    """2-D gradient noise with ``res_y`` x ``res_x`` lattice cells over the image: (H, W), about [-1, 1]."""
    angles = 2 * math.pi * torch.rand(res_y + 1, res_x + 1, device=device)
    grads = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)  # (ry+1, rx+1, 2)
    y = torch.arange(height, device=device) * (res_y / height)
    x = torch.arange(width, device=device) * (res_x / width)
    y0, x0 = y.floor().long(), x.floor().long()
    fy, fx = y - y0, x - x0  # (H,), (W,) position inside the cell

    def corner(dy: int, dx: int) -> Tensor:  # dot(gradient at corner, offset to corner): (H, W)
        g = grads[(y0 + dy)[:, None], (x0 + dx)[None, :]]  # (H, W, 2)
        return g[..., 0] * (fy - dy)[:, None] + g[..., 1] * (fx - dx)[None, :]

    uy, ux = _fade(fy)[:, None], _fade(fx)[None, :]
    top = torch.lerp(corner(0, 0), corner(0, 1), ux)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), ux)
    return torch.lerp(top, bottom, uy) * math.sqrt(2)


def perlin_mask(
    height: int, width: int, threshold: float = 0.5, max_scale_exp: int = 6, device=None
) -> Tensor:
    """A binary (H, W) blob mask: Perlin noise at a random power-of-two scale per axis, thresholded."""
    top = max(0, min(max_scale_exp, int(math.log2(max(2, min(height, width))))))
    ry, rx = (2 ** int(torch.randint(0, top + 1, (1,))) for _ in range(2))
    return (perlin_noise(height, width, ry, rx, device) > threshold).float()


def synthesize_anomalies(
    images: Tensor, prob: float = 0.5, threshold: float = 0.5, beta_max: float = 0.8
) -> tuple[Tensor, Tensor]:
    """Corrupt each image with probability ``prob``.

    Args:
        images: (B, 3, H, W) normalised normal images.
        prob: chance that an image gets an anomaly (the rest stay clean with an empty mask).
        threshold: Perlin-noise threshold (DRAEM's 0.5).
        beta_max: the largest opacity of the original image inside the mask (DRAEM's 0.8).

    Returns:
        (B, 3, H, W) corrupted images and (B, 1, H, W) 0/1 masks of the changed regions.
    """
    b, _, h, w = images.shape
    dev = images.device
    masks = torch.zeros(b, 1, h, w, device=dev)
    for i in range(b):
        if float(torch.rand(1)) < prob:
            masks[i, 0] = perlin_mask(h, w, threshold, device=dev)
    other = images.roll(1, dims=0).flip(-1, -2)  # another image's texture, misaligned on purpose
    noise = torch.randn(images.shape, device=dev)
    use_noise = (torch.rand(b, 1, 1, 1, device=dev) < 0.5).float()
    texture = use_noise * noise + (1 - use_noise) * other
    beta = torch.rand(b, 1, 1, 1, device=dev) * beta_max
    corrupted = images * (1 - masks) + (1 - beta) * masks * texture + beta * masks * images
    return corrupted, masks
