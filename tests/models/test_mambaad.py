"""The MambaAD model: sizes, shapes on any grid, training step, maps and official checkpoint loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

import mambaad
import mambaad.scan.orders
from mambaad.errors import CheckpointError, MambaADError
from mambaad.models.anomaly_map import gaussian_blur, image_scores, pool_scores
from mambaad.models.decoder import HybridScan, lss_layout
from mambaad.models.official import official_state_dict, official_to_ours
from mambaad.scan.orders import CURVES

TINY = {"encoder": "resnet18", "depths": (1, 1, 1, 1)}


@pytest.fixture(scope="module")
def official() -> mambaad.MambaAD:
    torch.manual_seed(0)
    return mambaad.MambaAD()


def test_official_parameter_counts(official: mambaad.MambaAD) -> None:
    params = list(official.parameters())
    assert sum(p.numel() for p in params) == 25_615_232
    assert sum(p.numel() for p in params if p.requires_grad) == 17_444_928


def test_official_layout(official: mambaad.MambaAD) -> None:
    stages = official.decoder.stages
    assert [len(s.blocks) for s in stages] == [1, 2, 2, 1]
    assert [len(s.blocks[0].hss) for s in stages] == [3, 2, 3, 3]
    rates = [round(b.hss[0].drop_path.drop_prob, 4) for s in stages for b in s.blocks]
    assert rates == [0.2, 0.16, 0.1467, 0.1067, 0.0933, 0.0267]
    ss2d = stages[1].blocks[0].hss[0].ss2d  # C = 256
    assert (ss2d.d_inner, ss2d.dt_rank, ss2d.d_state) == (512, 16, 16)
    assert torch.equal(ss2d.A_logs[0], torch.log(torch.arange(1.0, 17.0)))
    assert lss_layout(9) == (3, 3) and lss_layout(4) == (2, 2) and lss_layout(1) == (1, 1)


def test_official_forward_backward_on_cpu(official: mambaad.MambaAD) -> None:
    official.train()
    assert not official.encoder.training
    x = torch.randn(2, 3, 256, 256)
    enc, dec = official(x)
    assert [tuple(d.shape) for d in dec] == [(2, 64, 64, 64), (2, 128, 32, 32), (2, 256, 16, 16)]
    assert [e.shape for e in enc] == [d.shape for d in dec]
    loss = official.loss(enc, dec)
    loss.backward()
    grads = [p.grad for _, p in official.trainable_parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(p.grad is None for p in official.encoder.parameters())
    official.zero_grad(set_to_none=True)
    official.eval()


@pytest.mark.parametrize("curve", CURVES)
@pytest.mark.parametrize("directions", [2, 4, 8])
def test_non_square_input_every_scan(curve: str, directions: int) -> None:
    """224 x 320 gives 7x10 ... 56x80 grids: not square, not powers of two."""
    torch.manual_seed(0)
    model = mambaad.MambaAD(scan=curve, directions=directions, **TINY).eval()
    maps, scores = model.predict(torch.randn(1, 3, 224, 320))
    assert maps.shape == (1, 224, 320) and scores.shape == (1,)
    assert torch.isfinite(maps).all()


def test_official_config_on_224x320(official: mambaad.MambaAD) -> None:
    maps, scores = official.predict(torch.randn(1, 3, 224, 320))
    assert maps.shape == (1, 224, 320) and torch.isfinite(scores).all()


def test_scan_order_matters() -> None:
    """Changing only the curve changes the output (the scans are really used)."""
    torch.manual_seed(0)
    a = mambaad.MambaAD(scan="hilbert", **TINY).eval()
    b = mambaad.MambaAD(scan="sweep", **TINY).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(a(x)[1][0], b(x)[1][0])


def test_hybrid_scan_roundtrip() -> None:
    scan = HybridScan("hilbert", 8)
    x = torch.randn(2, 3, 6, 10)
    xs = scan.encode(x)  # (B, K, D, L)
    assert xs.shape == (2, 8, 3, 60)
    assert torch.allclose(scan.decode(xs, 6, 10), 8 * x.flatten(2))


def test_bad_input_size() -> None:
    model = mambaad.MambaAD(**TINY)
    with pytest.raises(MambaADError, match="multiple of 32"):
        model(torch.randn(1, 3, 100, 96))


@pytest.mark.parametrize("slices", [False, True], ids=["conv", "slices"])
@pytest.mark.parametrize("shape", [(2, 40, 33), (1, 5, 7), (1, 64, 64)])
def test_gaussian_blur_equals_scipy(
    shape: tuple[int, int, int], slices: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both forms: the eager convolutions and the shifted slices taken under ``torch.compile``."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: slices)
    rng = np.random.default_rng(0)
    maps = rng.random(shape).astype(np.float64)
    ours = gaussian_blur(torch.from_numpy(maps), sigma=4.0).numpy()
    ref = np.stack([ndimage.gaussian_filter(m, sigma=4.0) for m in maps])
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_gaussian_blur_compiles_to_one_graph() -> None:
    """Compiled, the blur is one graph (its taps are constants, no break) with the eager values."""
    maps = torch.rand(2, 48, 40)
    compiled = torch.compile(gaussian_blur, fullgraph=True)
    torch.testing.assert_close(compiled(maps, 4.0), gaussian_blur(maps, 4.0), atol=1e-6, rtol=1e-5)


def test_image_scores() -> None:
    maps = torch.arange(2 * 4 * 4, dtype=torch.float32).view(2, 4, 4)
    assert image_scores(maps).tolist() == [15.0, 31.0]
    assert image_scores(maps, topk=2).tolist() == [14.5, 30.5]
    assert pool_scores(maps, "max").tolist() == [15.0, 31.0]
    assert pool_scores(maps, "mean").tolist() == [7.5, 23.5]
    assert pool_scores(maps, "topk", topk=2).tolist() == [14.5, 30.5]


def test_anomaly_map_is_zero_for_perfect_reconstruction() -> None:
    model = mambaad.MambaAD(**TINY)
    feats = [torch.randn(1, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate((64, 128, 256))]
    amap = model.anomaly_map(feats, feats)
    assert amap.shape == (1, 64, 64) and amap.abs().max() < 1e-6
    assert model.loss(feats, feats).item() == 0.0


MANIFEST = Path(__file__).resolve().parents[2].parent / "shared/reference/official_parity/manifest.json"


def official_state(model: mambaad.MambaAD) -> dict[str, torch.Tensor]:
    """Our weights under the official names (the names come from the official manifest)."""
    entries = json.loads(MANIFEST.read_text())["entries"]
    names = [e["name"] for e in entries if e["rule"] != "int_unchanged"]
    ours = model.state_dict()
    mapped = {official_to_ours(n): n for n in names}
    assert set(mapped) == set(ours)  # the renaming is a bijection onto our keys
    return {name: ours[key] for key, name in mapped.items()}


def test_load_official_from_dict_and_path(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = mambaad.MambaAD().eval()
    state = official_state(source)
    loaded = mambaad.load_official(state)
    assert not loaded.training
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    path = tmp_path / "mambaad_mvtec.pth"
    torch.save({"net": state}, path)
    from_file = mambaad.load_official(path)
    assert torch.equal(
        from_file.decoder.stages[3].blocks[0].fuse.weight, source.decoder.stages[3].blocks[0].fuse.weight
    )

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pth"):
        mambaad.load_official(truncated)
    state.pop(next(iter(state)))
    with pytest.raises(CheckpointError, match="missing"):
        mambaad.load_official(state)


def test_official_state_dict_uses_the_official_names(official: mambaad.MambaAD) -> None:
    """The inverse renaming gives exactly the manifest's names (the PatchExpand norm and the bottleneck
    fuse keep theirs) and load_official reads it back."""
    ours = official_state_dict(official)
    assert ours.keys() == official_state(official).keys()
    loaded = mambaad.load_official(ours)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in official.state_dict().items())


def test_load_official_checks_scan_indices() -> None:
    torch.manual_seed(1)
    state = official_state(mambaad.MambaAD())
    prefix = "net_s.layers_up.0.blocks.0.smm_blocks.0.self_attention.scans."
    hilbert = mambaad.scan.orders.scan_orders("hilbert", 8, 8)[0]
    state[prefix + "index_flat_inv"] = torch.argsort(hilbert).view(1, 1, 64)
    state[prefix + "index_flat"] = hilbert.view(1, 1, 64)
    mambaad.load_official(dict(state))  # the right curve is accepted
    state[prefix + "index_flat"] = torch.arange(64).view(1, 1, 64)  # a raster scan, not the Hilbert curve
    with pytest.raises(CheckpointError, match="scan order"):
        mambaad.load_official(state)


def test_depths_must_name_every_decoder_stage() -> None:
    """Three depths built a decoder whose maps covered two of the encoder's three scales (zip dropped the
    third), one depth a model with no maps; both are a ConfigError now."""
    for depths in ((1, 1, 1), (1,), (1, 1, 1, 1, 1)):
        with pytest.raises(MambaADError, match=r"model\.depths must list 4 stage depths"):
            mambaad.MambaAD(encoder="resnet18", depths=depths)
