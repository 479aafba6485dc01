"""Engine tests run with one intra-op thread.

One thread makes the runs fast on a busy 2-core machine (OpenMP threads spin when cores are
oversubscribed) and bit-reproducible between this process and a ``python -m mambaad`` subprocess.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
