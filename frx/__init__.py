"""frx: Frequency Regularization, reproduced and extended."""

from .fr import CorruptFile, FR, deploy, export, pack, regularize, summary, unpack, unpack_meta

__version__ = "0.1.0"
__all__ = ["CorruptFile", "FR", "deploy", "export", "pack", "regularize", "summary", "unpack", "unpack_meta", "__version__"]
