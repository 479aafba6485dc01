"""Engine tests run with one intra-op thread.

One thread makes the runs fast on a busy 2-core machine (OpenMP threads spin when cores are
oversubscribed) and bit-reproducible between this process and a ``python -m mambaad`` subprocess.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test of this folder runs with one intra-op thread (``one_torch_thread``)."""
