"""frx: Frequency Regularization, reproduced and extended."""

from .fr import FR, CorruptFile, deploy, export, get_k, pack, regularize, set_k, summary, unpack, unpack_meta

__version__ = "0.1.0"
__all__ = ["CorruptFile", "FR", "deploy", "export", "pack", "regularize", "summary", "unpack", "unpack_meta",
           "__version__", "get_k", "set_k"]
