"""SimpleNet's sign chain (loss -> discriminator -> map), its grid orientation and its feature standardiser.

The encoder is a random-init ResNet18 (only its stride-4 map, 64 channels); the tests feed synthetic
aggregated features straight to the adaptor and discriminator, so they control exactly what is normal.
"""

from __future__ import annotations

import pytest
import torch

from mambaad.models import create_model
from mambaad.models.simplenet import ChannelStandardizer, SimpleNet, anomaly_maps

C = 64  # resnet18's stride-4 channels


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small(**options: object) -> SimpleNet:
    torch.manual_seed(0)
    return create_model(
        "simplenet", encoder="resnet18", encoder_weights=None, layers=(0,), discriminator_hidden=64, **options
    )


def plane_features(gen: torch.Generator, batch: int, basis: torch.Tensor) -> torch.Tensor:
    """Normal features (B, 8, 8, C): a 4-D plane of the C-D space, at a large scale (std 5, offset 2)."""
    return 5.0 * torch.randn(batch, 8, 8, basis.shape[0], generator=gen) @ basis + 2.0


def test_anomaly_map_is_minus_the_discriminator_score_on_the_same_grid() -> None:
    normality = torch.ones(2, 1, 4, 8)  # (B, 1, h, w): everything accepted ...
    normality[0, 0, 1, 6] = -3.0  # ... but one location of image 0, off the diagonal (catches a transpose)
    maps = anomaly_maps(normality, (32, 64), sigma=1.0)
    assert maps.shape == (2, 32, 64)
    row, col = divmod(int(maps[0].argmax()), 64)
    assert row // 8 == 1 and col // 8 == 6  # the rejected cell, upsampled 8 x
    assert maps[0].max() > maps[1].max()  # its image scores higher
    assert torch.allclose(anomaly_maps(normality, (4, 8), sigma=0.0), -normality[:, 0])


def test_training_makes_an_off_manifold_patch_the_most_anomalous() -> None:
    """After a few steps of Eq. 7 a feature far from the normal ones is rejected: sign of loss and map."""
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(C, 4, generator=gen))[0].T  # (4, C) orthonormal rows
    model = small(noise_std=0.3)  # a large noise learns in a few steps; the sign does not depend on it
    model.train()
    opt = torch.optim.Adam(model.param_groups(1e-3))
    losses = []
    for _ in range(40):
        loss = model.feature_loss(plane_features(gen, 4, basis))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5

    model.eval()
    feats = plane_features(gen, 2, basis)
    off = torch.randn(C, generator=gen)
    off -= basis.T @ (basis @ off)  # orthogonal to the plane
    feats[0, 3, 5] += 15.0 * off / off.norm()
    with torch.no_grad():
        maps = anomaly_maps(model.normality(feats), (32, 32), sigma=0.0)  # (2, 32, 32), 4 px per cell
    row, col = divmod(int(maps[0].argmax()), 32)
    assert (row // 4, col // 4) == (3, 5)
    assert maps[0].max() > maps[1].max()


def test_standardised_features_do_not_depend_on_the_encoder_scale() -> None:
    """The noise sigma is absolute: x100 features (another encoder) must reach the adaptor unchanged."""
    gen = torch.Generator().manual_seed(1)
    feats = 0.5 + torch.randn(3, 8, 8, C, generator=gen)
    a, b = small(), small()
    a.train(), b.train()
    for chunk in feats.split(1):
        a.adapt(chunk), b.adapt(100.0 * chunk - 7.0)
    a.eval(), b.eval()
    assert torch.allclose(a.adapt(feats), b.adapt(100.0 * feats - 7.0), atol=1e-4)
    raw = small(standardize=False).eval()
    assert not torch.allclose(raw.adapt(feats), raw.adapt(100.0 * feats - 7.0), atol=1e-1)


def test_standardizer_statistics_are_the_exact_training_moments() -> None:
    gen = torch.Generator().manual_seed(2)
    x = 3.0 + 4.0 * torch.randn(100, 5, generator=gen)
    s = ChannelStandardizer(5)
    assert torch.equal(s.eval()(x), x / (1 + s.eps) ** 0.5)  # identity (up to eps) before any update
    s.train()
    for part in x.split([10, 37, 53]):
        s(part)
    assert int(s.count) == 100
    assert torch.allclose(s.mean, x.mean(0), atol=1e-5)
    assert torch.allclose(s.var, x.var(0, unbiased=False), atol=1e-4)
    s.eval()
    y = s(x)  # eval mode: no update
    assert int(s.count) == 100
    assert torch.allclose(y.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(y.std(0, unbiased=False), torch.ones(5), atol=1e-4)


def test_standardizer_travels_in_the_state_dict() -> None:
    a = small()
    a.train()
    a.adapt(torch.randn(2, 8, 8, C))
    b = small()
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.standardizer.mean, a.standardizer.mean) and int(b.standardizer.count) == 128
