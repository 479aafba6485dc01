import os
import subprocess
import sys
from pathlib import Path

import mambaad

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_version() -> None:
    assert mambaad.__version__.count(".") == 2


def _spin_count_seen(env_value: str | None) -> str:
    """GOMP_SPINCOUNT in the environment when torch (libgomp) loads after ``import mambaad``, fresh process."""
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    if env_value is not None:
        env["GOMP_SPINCOUNT"] = env_value
    code = "import os, mambaad, torch; print(os.environ['GOMP_SPINCOUNT'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_openmp_workers_spin_briefly_unless_the_user_chose() -> None:
    """Importing mambaad before torch shortens libgomp's spin (CPU inference: the numba scan's thread no
    longer competes with spinning torch workers); a value the user set is kept."""
    assert _spin_count_seen(None) == "10000"
    assert _spin_count_seen("300000") == "300000"
