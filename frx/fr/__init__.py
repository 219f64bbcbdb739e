"""Frequency regularization: the method alone, independent of models and training."""

from .codec import CorruptFile, pack, unpack, unpack_meta
from .dct import dct_matrix, dctn, idctn, idctn_corner
from .deploy import FactoredConv, FactoredLinear, count_macs, deploy
from .factors import Factors, factored_inference
from .kept import get_k, set_k
from .layers import find_linear_views, kind_of, matches
from .mask import boundary, corner_bound, corner_mask, corner_shape, final_kept, full_mask, kept_order, ratio_to_k
from .parametrize import FR, FrequencyWeight, export, fr_tensors, regularize, summary
from .schedule import TailDropout

__all__ = [
    "CorruptFile", "FR", "FactoredConv", "FactoredLinear", "Factors", "FrequencyWeight", "TailDropout", "boundary",
    "corner_bound", "corner_mask", "corner_shape", "count_macs", "dct_matrix", "dctn", "deploy", "export",
    "factored_inference",
    "final_kept", "find_linear_views", "fr_tensors", "full_mask", "get_k", "idctn", "idctn_corner", "kept_order",
    "kind_of", "matches", "pack", "ratio_to_k", "regularize", "set_k", "summary", "unpack", "unpack_meta",
]
