"""How long torch's idle OpenMP workers spin before they sleep; set before torch loads libgomp.

libgomp (torch's OpenMP runtime on Linux) lets a worker that has run out of work spin 300,000 rounds, some
milliseconds, before it sleeps. The numba scan runs on a thread pool of its own beside torch's threads
(``scan.numba_scan``), and on 2 cores a torch worker spinning after every torch operation took a core's time
from it: CPU inference at batch 1 took 410-450 ms per image with that default and 340-365 ms with 10,000
rounds; CPU training did not change (docs/benchmarks.md, "CPU inference with the numba hybrid scan",
session 14). libgomp reads the variable once, when torch is first imported, so this works where mambaad is
imported before torch (the ``mambaad`` command, ``python -m mambaad``, ``import mambaad`` first); a value
already set wins.
"""

import os

SPIN_COUNT = "10000"
os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
