"""The streaming extraction engine: discover files, decode in worker processes, batch segments
across files, run the model once loaded, write resumable outputs.

``extract`` and ``TrackResult`` load lazily, so decode worker processes (which import
``dlr_engine.engine.worker``) do not import torch through this package.
"""
from __future__ import annotations

import importlib

from .discover import Corpus, discover, parse_shard

_LAZY = {"TrackResult", "extract"}
__all__ = ["Corpus", "TrackResult", "discover", "extract", "parse_shard"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(".extraction", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
