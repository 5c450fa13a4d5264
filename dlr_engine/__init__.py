"""dlr-engine: fused kernels, drop-in modules and a streaming extraction engine for the Deep
Learned Rhythmic representation (Jeong, Choi & Jeong 2017) and the models around it."""
from .config import DLRConfig
from .nn import DLR
from .ops import dlr

__version__ = "0.1.0"
__all__ = ["DLR", "DLRConfig", "dlr", "__version__"]
