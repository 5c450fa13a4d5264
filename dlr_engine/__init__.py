"""dlr-engine: fused kernels, drop-in modules and a streaming extraction engine for the Deep
Learned Rhythmic representation (Jeong, Choi & Jeong 2017) and the models around it."""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Everything loads on first use: `import dlr_engine` stays light, and the extraction engine's
# decode worker processes never import torch through this package.
_LAZY = {
    "DLR": "dlr_engine.nn",
    "DLRConfig": "dlr_engine.config",
    "dlr": "dlr_engine.ops",
    "extract": "dlr_engine.engine",
    "load_model": "dlr_engine.models.registry",
    "load_tf_checkpoint": "dlr_engine.models.pretrained",
    "DLRSourceTaskNet": "dlr_engine.models.dlr_source",
    "MelSpectrogram": "dlr_engine.spectral",
    "Tempogram": "dlr_engine.spectral",
}

SUBMODULES = ("models", "ops", "nn", "spectral", "audio", "engine", "io", "data", "train",
              "distributed")
"""Subpackages reachable as attributes (``dlr_engine.models.names()``), imported on first use."""

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in SUBMODULES:
        return importlib.import_module(f"dlr_engine.{name}")
    raise AttributeError(f"module 'dlr_engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *SUBMODULES})
