"""Models: the MambaAD network and its parts (encoder, bottleneck, decoder, maps)."""

from mambaad.models.mambaad import MambaAD, MambaADConfig
from mambaad.models.official import load_official

__all__ = ["MambaAD", "MambaADConfig", "load_official"]
