"""The fused Triton hybrid scan against the gather + reference-scan yardstick, on CPU via the interpreter.

The Triton interpreter must be switched on before triton is first imported, and other tests of the session
may import it earlier, so the kernel runs in a subprocess with ``TRITON_INTERPRET=1``. The subprocess
computes the forward and every gradient in fp32 with the kernel and in float64 with the reference, for a
handful of small shapes (odd lengths, several chunks, partial channel blocks, missing D / bias, strided
inputs), and reports the errors as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mambaad.errors import ConfigError
from mambaad.scan.orders import scan_orders
from mambaad.scan.triton_scan import hybrid_selective_scan, hybrid_selective_scan_torch

pytest.importorskip("triton")

# (name, batch, K, D, N, H, W, chunk, block_d, curve, with_skip, softplus, channels_last, fwd, bwd kernel,
#  seg_len of the step kernels: None = automatic (no split at these sizes), else L cut into segments,
#  rank: None = delta given in full, else the low-rank (B, K, rank, L) input plus dt_weight (K, D, rank))
CASES = [
    ("L1", 1, 2, 4, 4, 1, 1, 16, None, "hilbert", True, True, False, "auto", "chunk", None),
    ("odd_L15_chunks", 2, 8, 3, 2, 3, 5, 4, 2, "hilbert", True, True, False, "seq", "chunk", None),
    ("odd_L15_chunks_fwdchunk", 2, 8, 3, 2, 3, 5, 4, 2, "hilbert", True, True, False, "chunk", "chunk", None),
    ("odd_L15_bwdseq", 2, 8, 3, 2, 3, 5, 4, 2, "hilbert", True, True, False, "seq", "seq", None),
    ("odd_L15_split", 2, 8, 3, 2, 3, 5, 4, 2, "hilbert", True, True, False, "seq", "seq", 4),
    ("L16_noskip", 1, 8, 2, 4, 4, 4, 8, None, "zigzag", False, False, False, "seq", "chunk", None),
    ("L16_noskip_bwdseq", 1, 8, 2, 4, 4, 4, 8, None, "zigzag", False, False, False, "auto", "seq", None),
    ("L33_strided", 1, 4, 2, 3, 3, 11, 16, None, "scan", True, True, True, "seq", "chunk", None),
    ("L33_strided_fwdchunk", 1, 4, 2, 3, 3, 11, 16, None, "scan", True, True, True, "chunk", "chunk", None),
    ("L33_strided_bwdseq", 1, 4, 2, 3, 3, 11, 16, None, "scan", True, True, True, "chunk", "seq", None),
    ("L33_split", 1, 4, 2, 3, 3, 11, 4, None, "scan", True, True, True, "seq", "seq", 8),
    ("L33_split_bwdchunk", 1, 4, 2, 3, 3, 11, 4, None, "sweep", False, True, False, "seq", "chunk", 12),
]
CASES = [(*c, None) for c in CASES] + [
    ("L15_N16_bwdseq", 1, 2, 3, 16, 3, 5, 4, None, "hilbert", True, True, False, "seq", "seq", None, None),
    ("L15_N1_bwdseq", 1, 2, 3, 1, 3, 5, 4, None, "zigzag", True, True, False, "seq", "seq", None, None),
    ("L33_split_stages3", 1, 4, 2, 3, 3, 11, 4, None, "scan", True, True, True, "seq", "seq", 8, None),
    ("L15_lowrank", 2, 8, 3, 2, 3, 5, 4, 2, "hilbert", True, True, True, "seq", "seq", None, 2),
    ("L33_lowrank_split", 1, 4, 5, 3, 3, 11, 4, None, "scan", True, True, True, "seq", "seq", 8, 3),
    ("L33_lowrank_chunk", 1, 4, 5, 3, 3, 11, 16, None, "scan", False, True, False, "chunk", "chunk", None, 1),
    # rank <= ROW_LOW_RANK and L not split: the step forward applies dt_proj itself (L15_lowrank, L33_lowrank:
    # a partial channel block); rank 9 or a split (L33_lowrank_split): delta computed before the kernels
    ("L33_lowrank", 2, 4, 5, 3, 3, 11, 4, None, "zigzag", True, True, True, "seq", "seq", None, 3),
    ("L15_rank9", 1, 2, 3, 2, 3, 5, 4, None, "hilbert", True, True, True, "seq", "seq", None, 9),
    # _rows: B / C rows channels-last (the kernels' ROW_VEC)
    ("L15_N4_rows", 1, 2, 3, 4, 3, 5, 4, None, "hilbert", True, True, True, "seq", "seq", None, None),
    ("L33_N4_split_rows", 1, 4, 2, 4, 3, 11, 4, None, "scan", True, True, True, "seq", "seq", 8, 2),
    ("L33_N3_split", 1, 4, 2, 3, 3, 11, 4, None, "zigzag", False, True, False, "seq", "seq", 8, None),
    # _gatherG: bwd_seg_kernel's GATHER_MODE G (blocks past a segment's or the sequence's end)
    ("L33_split_gather0", 1, 4, 2, 3, 3, 11, 4, None, "scan", True, True, True, "seq", "seq", 8, None),
    ("odd_L15_gather1", 2, 8, 3, 2, 3, 5, 4, 2, "hilbert", True, True, False, "seq", "seq", None, None),
    ("L33_split_gather2_rows", 1, 4, 2, 4, 3, 11, 4, None, "scan", True, True, True, "seq", "seq", 8, 2),
    # _bd16: the forward step kernel with 16 channels per program (fwd_block_d; D = 20: a partial block) and
    # 8 steps per block; L512: segments from the split policy (L >= SPLIT_MIN_LENGTH, few programs)
    ("L33_N16_bd16", 1, 2, 20, 16, 3, 11, 8, None, "hilbert", True, True, True, "seq", "seq", 16, 3),
    ("L512_autosplit", 1, 2, 3, 4, 16, 32, 16, None, "hilbert", True, True, True, "seq", "seq", None, None),
]

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from mambaad.scan.orders import scan_orders
    from mambaad.scan import triton_scan
    from mambaad.scan.triton_scan import hybrid_selective_scan

    torch.manual_seed(0)
    results = {}
    default_gather = dict(triton_scan.GATHER_MODE)
    for name, b, k, d, n, h, w, chunk, block_d, curve, skip, softplus, cl, fwd, bwd, seg, rank in json.loads(
        sys.argv[1]
    ):
        length = h * w
        triton_scan.set_pipeline_stages(3 if name.endswith("_stages3") else 1)  # software-pipelined loops
        triton_scan.GATHER_MODE.update(default_gather)
        if "_gather" in name:
            triton_scan.set_gather_mode(int(name.split("_gather")[1][0]))
        fwd_opts = {"fwd_block_d": 16, "unroll": 8} if "_bd16" in name else {}
        orders = scan_orders(curve, h, w, k)
        f64 = torch.float64
        u = torch.randn(b, d, length, dtype=f64)
        if cl:  # channels-last storage: (B, L, D) viewed as (B, D, L)
            u = u.transpose(1, 2).contiguous().transpose(1, 2)
        xs = [
            u,
            torch.randn(b, k, d, length, dtype=f64) * 0.7,
            -(torch.rand(k * d, n, dtype=f64) * 2 + 0.1),
            torch.randn(b, k, n, length, dtype=f64),
            torch.randn(b, k, n, length, dtype=f64),
            torch.randn(k * d, dtype=f64) if skip else None,
            torch.randn(k * d, dtype=f64) * 0.3 if skip else None,
        ]
        if not softplus:
            xs[1] = xs[1].abs() + 0.05  # delta used as is must stay positive
        if rank:  # low-rank dt (a (B, K, R, L) view of channels-last memory) and the dt_proj weight
            xs[1] = torch.randn(b, k, length, rank, dtype=f64).transpose(2, 3) * 0.7
            xs.append(torch.randn(k, d, rank, dtype=f64) * 0.6)
        x32 = [None if t is None else t.float().requires_grad_() for t in xs]
        x64 = [None if t is None else t.clone().requires_grad_() for t in xs]
        if cl:
            x32[0] = x32[0].detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
        if rank:
            x32[1] = x32[1].detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()
        if "_rows" in name:  # (B, K, L, N) storage viewed as (B, K, N, L), as SS2D passes B and C
            for i in (3, 4):
                x32[i] = x32[i].detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()
        opts = {"dt_weight": x32[7], **fwd_opts} if rank else fwd_opts
        y = hybrid_selective_scan(
            *x32[:7], orders, softplus, backend="triton", chunk=chunk, block_d=block_d, fwd_kernel=fwd,
            bwd_kernel=bwd, seg_len=seg, **opts,
        )
        x_ref = list(x64[:7])
        if rank:
            x_ref[1] = torch.einsum("bkrl,kdr->bkdl", x64[1], x64[7])
        ref = hybrid_selective_scan(*x_ref, orders, softplus, backend="torch")
        grad = torch.randn_like(ref)
        y.backward(grad.float())
        ref.backward(grad)

        def rel(a, r):  # max error relative to the largest reference entry (exact zeros: absolute)
            scale = r.abs().max().item()
            return (a.double() - r).abs().max().item() / (scale if scale > 0 else 1.0)

        with torch.no_grad():  # inference launches skip saving the chunk states
            y_nograd = hybrid_selective_scan(
                *x32[:7], orders, softplus, backend="triton", chunk=chunk, block_d=block_d, fwd_kernel=fwd,
                seg_len=seg, **opts,
            )
        errs = {"y": rel(y, ref), "y_nograd": rel(y_nograd, ref)}
        names = ["u", "delta", "A", "B", "C", "D", "delta_bias", "dt_weight"]
        for tname, a, r in zip(names, x32, x64):
            if a is not None:
                errs[tname] = rel(a.grad, r.grad)
        results[name] = errs
    print("RESULTS" + json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def interpreted_errors() -> dict[str, dict[str, float]]:
    """The cases in two interpreter processes at once (the interpreter is slow; CI has two cores), each
    under its own time limit."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, json.dumps(CASES[i::2])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results: dict[str, dict[str, float]] = {}
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=400)
            assert proc.returncode == 0, err[-3000:]
            line = next(x for x in out.splitlines() if x.startswith("RESULTS"))
            results.update(json.loads(line[len("RESULTS") :]))
    finally:
        for proc in procs:
            proc.kill()
    return results


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_forward_and_gradients_match_reference(interpreted_errors: dict, case: str) -> None:
    errs = interpreted_errors[case]
    expected = {"y", "y_nograd", "u", "delta", "A", "B", "C"}
    if "lowrank" in case:
        expected.add("dt_weight")
    assert expected <= set(errs)
    for name, err in errs.items():
        assert err < 1e-5, f"{case}: {name} relative max error {err:.2e}"


def test_inference_saves_no_states_for_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under no_grad autograd still reports needs_input_grad for a Parameter (SS2D passes D and the delta
    bias as Parameters): the forward must not save the chunk states then, only when autograd records."""
    from mambaad.scan import triton_scan

    saved: list[bool] = []
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(triton_scan, "_kernels", lambda: {})  # nothing launched: the launcher records
    monkeypatch.setattr(triton_scan, "_forward_seq", lambda args, save, *rest: saved.append(save))
    b, k, d, n, h, w = 1, 2, 3, 2, 2, 3
    length = h * w
    u, delta = torch.randn(b, d, length), torch.randn(b, k, d, length)
    A, B, C = -torch.rand(k * d, n) - 0.1, torch.randn(b, k, n, length), torch.randn(b, k, n, length)
    skip, bias = torch.nn.Parameter(torch.randn(k * d)), torch.nn.Parameter(torch.randn(k * d))
    orders = scan_orders("hilbert", h, w, k)
    with torch.no_grad():
        hybrid_selective_scan(u, delta, A, B, C, skip, bias, orders, backend="triton", fwd_kernel="seq")
    hybrid_selective_scan(u, delta, A, B, C, skip, bias, orders, backend="triton", fwd_kernel="seq")
    assert saved == [False, True]


def test_inference_under_autocast_computes_the_low_rank_delta_in_its_dtype(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where delta = dt_proj(dts) is computed before the kernels (rank above ROW_LOW_RANK), inference under
    autocast writes it in autocast's dtype (half the bytes); training keeps dts' dtype, as its backward
    recomputes it."""
    from mambaad.scan import triton_scan

    dtypes: list[torch.dtype] = []
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(triton_scan, "_kernels", lambda: {})
    monkeypatch.setattr(triton_scan, "_forward_seq", lambda args, *rest: dtypes.append(args[1].dtype))
    b, k, d, n, h, w, r = 1, 2, 3, 2, 2, 3, triton_scan.ROW_LOW_RANK + 1
    length = h * w
    u, dts = torch.randn(b, d, length), torch.randn(b, k, r, length)
    A, B, C = -torch.rand(k * d, n) - 0.1, torch.randn(b, k, n, length), torch.randn(b, k, n, length)
    weight = torch.nn.Parameter(torch.randn(k, d, r))
    orders = scan_orders("hilbert", h, w, k)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            hybrid_selective_scan(u, dts, A, B, C, None, None, orders, backend="triton", dt_weight=weight)
        u_train = u.clone().requires_grad_()
        hybrid_selective_scan(u_train, dts, A, B, C, None, None, orders, backend="triton", dt_weight=weight)
    with torch.no_grad():
        hybrid_selective_scan(u, dts, A, B, C, None, None, orders, backend="triton", dt_weight=weight)
    assert dtypes == [torch.bfloat16, torch.float32, torch.float32]


def test_torch_path_equals_encode_scan_decode() -> None:
    """The fused-signature yardstick is itself the explicit gather -> scan -> scatter-add loop."""
    torch.manual_seed(1)
    b, k, d, n, h, w = 2, 4, 3, 2, 3, 4
    length = h * w
    orders = scan_orders("hilbert", h, w, k)
    u = torch.randn(b, d, length, dtype=torch.float64)
    delta = torch.randn(b, k, d, length, dtype=torch.float64)
    A = -torch.rand(k * d, n, dtype=torch.float64) - 0.1
    B, C = torch.randn(2, b, k, n, length, dtype=torch.float64)
    D, bias = torch.randn(2, k * d, dtype=torch.float64)
    out = hybrid_selective_scan_torch(u, delta, A, B, C, D, bias, orders)
    expected = torch.zeros(b, d, length, dtype=torch.float64)
    for kk in range(k):
        dt = torch.nn.functional.softplus(delta[:, kk] + bias[kk * d : (kk + 1) * d, None])  # (B, D, L)
        state = torch.zeros(b, d, n, dtype=torch.float64)
        a_k = A[kk * d : (kk + 1) * d]  # (D, N)
        for t in range(length):
            p = orders[kk, t]
            x = dt[:, :, p, None]
            state = torch.exp(x * a_k) * state + x * B[:, kk, None, :, p] * u[:, :, p, None]
            y = (state * C[:, kk, None, :, p]).sum(-1) + D[kk * d : (kk + 1) * d] * u[:, :, p]
            expected[:, :, p] += y
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_bad_shapes_and_backend_raise() -> None:
    orders = scan_orders("sweep", 2, 2, 2)
    u = torch.randn(1, 3, 4)
    delta = torch.randn(1, 2, 3, 4)
    A = -torch.ones(6, 2)
    B = C = torch.randn(1, 2, 2, 4)
    with pytest.raises(ConfigError, match="unknown hybrid-scan backend"):
        hybrid_selective_scan(u, delta, A, B, C, None, None, orders, backend="cuda-magic")
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="triton"):
            hybrid_selective_scan(u, delta, A, B, C, None, None, orders, backend="triton")


def test_segment_policy() -> None:
    """Segments only where programs are few (below ROW_ / BWD_SPLIT_BELOW), up to about ROW_ /
    BWD_SPLIT_PROGRAMS programs, never below MIN_SEGMENT steps; an explicit length holds."""
    from mambaad.scan import triton_scan as ts

    # the forward: batch 16's stage 3 (512 programs of 32 channels) is cut, stage 2 (1,024) is not
    assert ts._segments(16, 8, 128, 4096, 16, None) == (1024, ts.ROW_SPLIT_PROGRAMS // 512)
    assert ts._segments(16, 8, 256, 1024, 16, None) == (1024, 1)
    assert ts._segments(16, 8, 128, 4096, 16, None, block_d=64) == (512, 8)  # 256 programs of 64 channels
    assert ts._segments(1, 8, 128, 4096, 16, None) == (ts.MIN_SEGMENT, 4096 // ts.MIN_SEGMENT)  # batch 1
    assert ts._segments(1, 8, 512, 256, 16, None) == (256, 1)  # short sequences are not cut
    assert ts._segments(2, 8, 3, 33, 4, 8) == (8, 5)  # explicit length: the last segment is partial
    assert ts._segments(2, 8, 3, 33, 4, 6) == (8, 5)  # rounded up to a multiple of the chunk
    assert ts._segments(2, 8, 3, 33, 4, 0) == (33, 1)  # 0: no split
    # the backward: its own thresholds
    assert ts._segments(16, 8, 128, 4096, 16, None, backward=True)[1] == ts.BWD_SPLIT_PROGRAMS // 512
    assert ts._segments(16, 8, 256, 1024, 16, None, backward=True) == (1024, 1)  # 1,024 programs: unsplit
    assert ts._segments(16, 8, 256, 1024, 16, 256, backward=True) == (256, 4)  # an explicit length holds


def test_tuning_tables_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """One value for every kernel of a table or per kernel; a bad entry names itself and changes nothing."""
    from mambaad.scan import triton_scan as ts

    monkeypatch.setattr(ts, "PIPELINE_STAGES", dict(ts.PIPELINE_STAGES))
    ts.set_pipeline_stages(2)
    assert set(ts.PIPELINE_STAGES.values()) == {2}
    ts.set_pipeline_stages("bwd_seq=4")
    assert ts.PIPELINE_STAGES == {"bwd_seq": 4, "bwd_seg": 2}
    for bad in ("0", "bwd_sq=2", "bwd_seq=x", "bwd_seg=2,bwd_seq=-1", "fwd_seq=2"):
        with pytest.raises(ConfigError, match="pipeline stages: bad entry"):
            ts.set_pipeline_stages(bad)
    assert ts.PIPELINE_STAGES == {"bwd_seq": 4, "bwd_seg": 2}
    monkeypatch.setattr(ts, "GATHER_MODE", dict(ts.GATHER_MODE))
    ts.set_gather_mode("bwd_seg=2")
    assert ts.GATHER_MODE == {"bwd_seg": 2}
    for bad in ("3", "bwd_seq=1", "bwd_seg=-1"):
        with pytest.raises(ConfigError, match="gather mode: bad entry"):
            ts.set_gather_mode(bad)
    assert ts.GATHER_MODE == {"bwd_seg": 2}
    for name in ts.FORWARD_SETTINGS.values():
        monkeypatch.setattr(ts, name, getattr(ts, name))
    assert ts._dt_proj_in_kernel("seq", 8, 1) and ts.ROW_LOW_RANK == 8
    assert not ts._dt_proj_in_kernel("seq", 8, 4)  # split: delta computed before the kernels
    assert not ts._dt_proj_in_kernel("seq", 16, 1) and not ts._dt_proj_in_kernel("chunk", 4, 1)
    assert not ts._dt_proj_in_kernel("seq", None, 1)  # delta given in full
    ts.set_forward_settings("unroll=2, split_below=0, low_rank=0")
    assert (ts.ROW_UNROLL, ts.ROW_SPLIT_BELOW, ts.ROW_BLOCK_D, ts.ROW_LOW_RANK) == (2, 0, 32, 0)
    assert not ts._dt_proj_in_kernel("seq", 4, 1)  # low_rank 0: never
    assert ts._segments(16, 8, 128, 4096, 16, None) == (4096, 1)  # split_below 0: never split
    for bad in ("unroll=3", "block_d=0", "split_programs=x", "lanes=2", "unroll=4,split_below=-1"):
        with pytest.raises(ConfigError, match="forward settings: bad entry"):
            ts.set_forward_settings(bad)
    assert (ts.ROW_UNROLL, ts.ROW_SPLIT_BELOW) == (2, 0)


_AUTOCAST_SCRIPT = textwrap.dedent(
    """
    import json
    import torch
    from mambaad.scan.orders import scan_orders
    from mambaad.scan.triton_scan import hybrid_selective_scan

    torch.manual_seed(5)
    b, k, d, n, r, h, w = 1, 4, 5, 3, 2, 3, 11
    orders = scan_orders("hilbert", h, w, k)
    u16 = torch.randn(b, h * w, d).bfloat16().transpose(1, 2)  # bf16 as a conv gives it under autocast
    x_dbl = torch.randn(b, k, h * w, r + 2 * n)  # fp32 (SS2D casts x_proj's output)
    dts, B, C = (t.transpose(2, 3) for t in x_dbl.split([r, n, n], dim=3))
    A, D, bias = -torch.rand(k * d, n) - 0.1, torch.randn(k * d), torch.randn(k * d) * 0.3
    weight = torch.randn(k, d, r) * 0.6

    def run(u, autocast):
        xs = [t.detach().clone().requires_grad_() for t in (u, dts, A, B, C, D, bias, weight)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = hybrid_selective_scan(*xs[:7], orders, backend="triton", dt_weight=xs[7])
        y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
        return y, xs

    y_ac, xs_ac = run(u16, True)
    y_32, xs_32 = run(u16.float(), False)  # the same values in fp32, no autocast
    errs = {"y": (y_ac - y_32).abs().max().item()}
    for name, a, r in zip(["u", "dts", "A", "B", "C", "D", "bias", "weight"], xs_ac, xs_32):
        errs[name] = (a.grad.float() - r.grad).abs().max().item() / r.grad.abs().max().item()
    print("RESULTS" + json.dumps({"errs": errs, "y_dtype": str(y_ac.dtype), "du_dtype": str(xs_ac[0].grad.dtype)}))
    """
)


def _interpret(script: str) -> dict:
    """Run ``script`` under Triton's interpreter in a subprocess; its JSON line after ``RESULTS``."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = (
        str(Path(__file__).resolve().parents[2] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULTS"))[len("RESULTS") :])


def test_bf16_inputs_under_autocast_are_scanned_in_fp32() -> None:
    """Under autocast a bf16 u is read in fp32 and delta = dt_proj(dts) computed in dts' dtype (fp32 here):
    the same output and gradients as an fp32 run on the same values, u's gradient in bf16."""
    out = _interpret(_AUTOCAST_SCRIPT)
    assert out["y_dtype"] == "torch.float32" and out["du_dtype"] == "torch.bfloat16"
    assert out["errs"]["y"] < 1e-6, out
    for name, err in out["errs"].items():
        assert err < (4e-3 if name == "u" else 1e-6), (name, out)  # u's gradient is rounded to bf16


_SOFTPLUS_SCRIPT = textwrap.dedent(
    """
    import json
    import torch
    import triton
    import triton.language as tl
    from mambaad.scan._triton_kernels import _softplus

    @triton.jit
    def kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(out_ptr + offs, _softplus(tl.load(x_ptr + offs, mask=offs < n)), mask=offs < n)

    x = torch.linspace(-40, 40, 20001)
    out = torch.empty_like(x)
    kernel[(triton.cdiv(x.numel(), 1024),)](x, out, x.numel(), BLOCK=1024)
    ref = torch.nn.functional.softplus(x.double())
    rel = ((out.double() - ref).abs() / ref).max().item()
    print("RESULTS" + json.dumps({"rel": rel, "at_minus_30": out[x.numel() // 8].item()}))
    """
)


def test_softplus_keeps_its_relative_accuracy_everywhere() -> None:
    """The kernels' softplus (log1p of e^-|x| by an atanh series) is within 1e-5 relative of torch's in
    fp32 over [-40, 40], also where log(1 + exp(x)) would round e^x away (x < -17)."""
    out = _interpret(_SOFTPLUS_SCRIPT)
    assert out["rel"] < 1e-5, out
    assert 0.0 < out["at_minus_30"] < 1e-12, out  # softplus(-30) = 9.4e-14, not 0


_ROWS_SCRIPT = textwrap.dedent(
    """
    import json
    import torch
    from mambaad.scan import triton_scan

    triton_scan.ROWS_KERNEL = True
    torch.manual_seed(2)
    same = {}
    for b, length, k, c, dtype, block in [
        (2, 37, 3, 36, torch.float32, 64),  # the last block partial
        (1, 64, 8, 40, torch.bfloat16, 2048),  # one block larger than the slab
        (2, 5, 2, 7, torch.float32, 16),
    ]:
        triton_scan.ROWS_BLOCK = block
        x = torch.randn(b, length, k, c).to(dtype).permute(0, 2, 1, 3)  # (B, K, L, C) view, as x_proj gives it
        out = triton_scan.direction_rows(x)
        same[f"{b}x{length}x{k}x{c}-{dtype}"] = bool(
            out.dtype == torch.float32 and out.is_contiguous() and torch.equal(out, x.float())
        )
    print("RESULTS" + json.dumps(same))
    """
)


def test_direction_rows_kernel_is_the_copy() -> None:
    """The Triton copy of x_proj's output into rows stored direction by direction (``ROWS_KERNEL``) gives
    the strided copy's tensor, fp32 and contiguous, from fp32 or bf16 input, partial blocks included."""
    out = _interpret(_ROWS_SCRIPT)
    assert len(out) == 3 and all(out.values()), out


_PROJECTION_SCRIPT = textwrap.dedent(
    """
    import json
    import torch
    from mambaad.scan import triton_scan

    torch.manual_seed(3)
    errors = {}
    for b, length, din, k, c, block_l in [
        (2, 37, 64, 3, 36, 16),  # the last row block partial, C padded to 64 columns
        (1, 16, 128, 8, 40, 16),  # two passes over Din
        (2, 20, 64, 2, 16, 128),  # one block larger than L
    ]:
        triton_scan.PROJ_BLOCK_L = block_l
        # x as SS2D hands it over: a (B, L, Din) view of a channels-last map
        # in fp16: the interpreter's tl.dot computes garbage from bf16 tiles (Triton 3.8; on the GPU it is
        # checked in bf16 by benchmarks/check_triton_scan.py)
        x = torch.randn(b, din, length, 1).half().permute(0, 2, 3, 1).reshape(b, length, din)
        w = torch.randn(k, c, din).half()
        with torch.no_grad():
            out = triton_scan.direction_projection(x, w)
        ref = torch.einsum("bld,kcd->bklc", x.double(), w.double())
        errors[f"{b}x{length}x{din}x{k}x{c}"] = {
            "layout": out.dtype == torch.float32 and out.is_contiguous() and out.shape == ref.shape,
            "rel": ((out.double() - ref).abs().max() / ref.abs().max()).item(),
        }
    # with autograd, or an fp32 x: the differentiable projection and the copy
    x = torch.randn(2, 9, 16, requires_grad=True)
    w = torch.randn(2, 20, 16)
    out = triton_scan.direction_projection(x, w)
    out.sum().backward()
    errors["autograd"] = {"layout": out.is_contiguous() and x.grad is not None, "rel": 0.0}
    print("RESULTS" + json.dumps(errors))
    """
)


def test_direction_projection_kernel_is_the_product() -> None:
    """x_proj as one Triton kernel (16-bit x and weight, no autograd) gives the product in fp32, contiguous
    (B, K, L, C), partial row blocks, padded columns and several passes over Din included; with autograd
    the differentiable projection runs."""
    out = _interpret(_PROJECTION_SCRIPT)
    assert len(out) == 4, out
    for name, r in out.items():
        assert r["layout"] and r["rel"] < 1e-5, (name, r)
