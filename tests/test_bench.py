"""`mambaad bench`: throughput lines for each requested mode and batch size."""

from __future__ import annotations

import json

import pytest

from mambaad.cli import main


def test_bench_cpu_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--device", "cpu", "--encoder", "resnet18", "--image-size", "64", "--steps", "1"]
    argv += ["--warmup", "0", "--batch-size", "1", "--batch-size", "2", "--backend", "sequential", "--json"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["mode"], r["batch_size"]) for r in rows] == [
        ("train", 1),
        ("train", 2),
        ("infer", 1),
        ("infer", 2),
    ]
    assert all(r["img_per_s"] > 0 and r["backend"] == "sequential" and r["device"] == "cpu" for r in rows)


def test_bench_bad_backend(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--device", "cpu", "--encoder", "resnet18", "--image-size", "64", "--steps", "1"]
    assert main([*argv, "--warmup", "0", "--batch-size", "1", "--backend", "nope"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]


def test_bench_triton_tuning_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--triton-gather / -maxnreg / -fwd set triton_scan's tables and settings; a bad entry is one clear line."""
    from mambaad.scan import triton_scan

    monkeypatch.setattr(triton_scan, "GATHER_MODE", dict(triton_scan.GATHER_MODE))
    monkeypatch.setattr(triton_scan, "MAX_REGISTERS", dict(triton_scan.MAX_REGISTERS))
    monkeypatch.setattr(triton_scan, "ROW_UNROLL", triton_scan.ROW_UNROLL)
    argv = ["bench", "--device", "cpu", "--encoder", "resnet18", "--image-size", "64", "--steps", "1"]
    argv += ["--warmup", "0", "--batch-size", "1", "--backend", "sequential", "--infer", "--json"]
    tuning = ["--triton-gather", "bwd_seg=0", "--triton-maxnreg", "bwd_seq=200", "--triton-fwd", "unroll=2"]
    assert main([*argv, *tuning]) == 0
    assert triton_scan.ROW_UNROLL == 2
    assert triton_scan.GATHER_MODE == {"bwd_seg": 0}
    assert triton_scan.MAX_REGISTERS["bwd_seq"] == 200
    capsys.readouterr()
    assert main([*argv, "--triton-gather", "bwd_seg=3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bwd_seg=3" in err[0]


def test_bench_module_bad_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m mambaad.bench`` reports a bad tuning option as one line and exit status 1, no traceback."""
    from mambaad import bench

    argv = ["--device", "cpu", "--encoder", "resnet18", "--image-size", "64", "--steps", "1", "--warmup", "0"]
    assert bench.main([*argv, "--batch-size", "1", "--infer", "--triton-fwd", "unroll=3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "unroll=3" in err[0]


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--batch-size", "0", "--batch-size must be >= 1, got 0"),
        ("--steps", "0", "--steps must be >= 1, got 0"),
        ("--warmup", "-1", "--warmup must be >= 0, got -1"),
        ("--device", "foo", "--device: unknown device 'foo'"),
    ],
)
def test_bench_bad_count_or_device_is_one_line(
    option: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zero batch or step count, or an unknown device, is one ``error:`` line naming the option (it was a
    traceback: a reshape of an empty batch, a division by zero, torch's device parser)."""
    argv = ["bench", "--device", "cpu", "--encoder", "resnet18", "--image-size", "64", "--infer"]
    assert main([*argv, option, value]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {says}")
