"""mambaad: multi-class unsupervised visual anomaly detection with MambaAD, in pure PyTorch."""

__version__ = "0.1.0"
