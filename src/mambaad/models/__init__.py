"""Models: the MambaAD network and its parts (encoder, bottleneck, decoder, maps)."""

from mambaad.models.mambaad import MambaAD, MambaADConfig
from mambaad.models.official import load_official
from mambaad.models.registry import create_model, list_models

__all__ = ["MambaAD", "MambaADConfig", "create_model", "list_models", "load_official"]
