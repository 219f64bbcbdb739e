"""frx: Frequency Regularization, reproduced and extended."""

from .fr import CorruptFile, FR, deploy, export, pack, regularize, summary, unpack, unpack_meta
from .fr import get_k, set_k

__version__ = "0.1.0"
__all__ = ["CorruptFile", "FR", "deploy", "export", "pack", "regularize", "summary", "unpack", "unpack_meta", "__version__",
           "get_k", "set_k"]
