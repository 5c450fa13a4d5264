"""Operators of dlr-engine: each has a plain-torch reference, launchers per backend and one
registered ``torch.library`` op."""
from .backends import BACKENDS, BackendUnavailable, explain, select
from .dlr_op import dlr
from .dlr_reference import dlr_reference

__all__ = ["BACKENDS", "BackendUnavailable", "dlr", "dlr_reference", "explain", "select"]
