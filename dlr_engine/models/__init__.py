"""Models of the literature around DLR, built and loaded by name (see ``registry``)."""
from .registry import get, load_model, names

__all__ = ["get", "load_model", "names"]
