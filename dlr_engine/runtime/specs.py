"""What ``extract`` runs for a ``--model`` spec: the inference form of the model, or with the
``:dlr`` suffix its DLR front-end alone (DLR features without paying for a back-end)."""
from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..models import load_model
from ..nn import DLR

FRONT_END_SUFFIX = ":dlr"
"""``<spec>:dlr`` (``default:dlr``, ``dlr13.safetensors:dlr``, ``path/model-523:dlr``): the DLR
front-end of the model ``<spec>``, alone."""


def front_end(model: nn.Module, spec: str = "the model") -> DLR:
    """The DLR front-end of ``model`` in eval mode, carrying the model's ``sample_rate``."""
    dlrs = [module for module in model.modules() if isinstance(module, DLR)]
    if not dlrs:
        raise ValueError(f"{spec} ({type(model).__name__}) has no DLR front-end; drop "
                         f"'{FRONT_END_SUFFIX}' to run the whole model")
    dlr = dlrs[0].eval()
    dlr.sample_rate = int(getattr(model, "sample_rate", dlr.config.sample_rate))
    dlr.label_names = {}
    return dlr


def load_for_extraction(spec: str | os.PathLike, backend: str | None = None) -> nn.Module:
    """``load_model(spec, for_inference=True)``; ``<spec>:dlr`` (when no file has that very
    name): the DLR front-end of ``load_model(<spec>)`` alone, whose forward returns the DLR
    (batch, 128, frames), so ``extract`` writes ``dlr`` features only."""
    text = os.fspath(spec)
    if text.endswith(FRONT_END_SUFFIX) and not Path(text).exists():
        base = text[:-len(FRONT_END_SUFFIX)]
        return front_end(load_model(base, backend=backend), repr(base))
    return load_model(spec, backend=backend, for_inference=True)
