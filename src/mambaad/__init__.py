"""mambaad: multi-class unsupervised visual anomaly detection with MambaAD, in pure PyTorch."""

from mambaad import _openmp  # noqa: F401  (first: before torch is imported)
from mambaad.models import MambaAD, MambaADConfig, load_official
from mambaad.scan import selective_scan

__version__ = "0.1.0"
__all__ = ["MambaAD", "MambaADConfig", "__version__", "load_official", "selective_scan"]
