"""GPU numerics of the whole model: every scan backend's anomaly maps against the reference scan.

1. Official parity fixture A on CUDA with each backend (README §9 tolerances).
2. Official configuration, random weights, random batch: fp32 maps of each backend vs ``reference``
   (goal: max abs difference <= 1e-4), and bf16 autocast vs fp32.

    PYTHONPATH=src python benchmarks/check_maps_gpu.py
Exits non-zero when a check fails.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

import mambaad
from mambaad.scan.selective_scan import list_backends

ROOT = Path(__file__).resolve().parents[1]


def load_parity_helpers():
    spec = importlib.util.spec_from_file_location("parity", ROOT / "tests/models/test_official_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixture_check(parity, parity_dir: Path, backend: str) -> bool:
    manifest = json.loads((parity_dir / "manifest.json").read_text())
    orders = np.load(parity_dir / "scan_orders.npz")
    ref = np.load(parity_dir / "fixture_a.npz")
    model = mambaad.load_official(
        parity.official_state_dict(manifest, 0.3, orders), scan_backend=backend
    ).cuda()
    tol = parity.readme_tolerances()
    x = torch.from_numpy(ref["input"]).cuda()
    with torch.no_grad():
        enc, dec = model(x)
        got = {
            "dec_out0": dec[0],
            "dec_out1": dec[1],
            "dec_out2": dec[2],
            "anomaly_map": model.anomaly_map(enc, dec),
            "loss": model.loss(enc, dec),
        }
        got["image_score"] = got["anomaly_map"].flatten(1).amax(1)
    ok = True
    for key, value in got.items():
        err = float(np.abs(value.double().cpu().numpy() - ref[key]).max())
        passed = err <= tol[key]
        ok &= passed
        print(
            f"  fixture A [{backend:10s}] {key:12s} max abs {err:.3g} (tol {tol[key]:.3g}) {'PASS' if passed else 'FAIL'}"
        )
    return ok


def main() -> int:
    assert torch.cuda.is_available(), "needs CUDA"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(torch.__version__, torch.cuda.get_device_name())
    backends = ["triton", *[b for b in list_backends() if b != "reference"]]
    ok = True
    parity = load_parity_helpers()  # honours MAMBAAD_PARITY_DIR
    parity_dir = parity.PARITY_DIR
    if parity_dir.is_dir():
        for backend in ["reference", *backends]:
            ok &= fixture_check(parity, parity_dir, backend)
    torch.manual_seed(0)
    model = mambaad.MambaAD(scan_backend="reference").cuda().eval()
    x = torch.randn(4, 3, 256, 256, device="cuda")
    ref_maps, _ = model.predict(x)
    for backend in backends:
        model.set_scan_backend(backend)
        maps, _ = model.predict(x)
        err = (maps - ref_maps).abs().max().item()
        ok &= err <= 1e-4
        print(
            f"random weights fp32 maps [{backend:10s}] vs reference: max abs {err:.3g} {'PASS' if err <= 1e-4 else 'FAIL'}"
        )
        with torch.autocast("cuda", dtype=torch.bfloat16):
            maps16, _ = model.predict(x)
        print(
            f"random weights bf16 maps [{backend:10s}] vs fp32 reference: max abs {(maps16 - ref_maps).abs().max().item():.3g}"
        )
    print("ALL PASS" if ok else "SOME FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
