"""scan2d: fused 2D selective-scan kernels for vision Mamba models.

Public API:
    scan_order, cross_scale_order, sequential_cross_scale_order   the paper's scan orders (int64 tensors)
    ScanDirection                                                  one scan of a 2D map (window, order, reverse)
    selective_scan                                                 drop-in for mamba-ssm's selective_scan_fn
    directional_scan                                               permute + scan + merge of a whole 2D scan layer

This package never imports ``mambacsr``; any vision-Mamba model can use it.  Under ``torch.compile`` the Triton
paths of ``selective_scan`` and the ungated ``directional_scan`` are custom ops (``torch.ops.scan2d.*``, registered
in each op's ``triton_op.py``), so they stay inside a compiled graph.
"""

from .directional import ChannelGate, directional_scan
from .directions import CROSS_SCALE_MODES, ScanDirection
from .orders import cross_scale_order, inverse_order, scan_order, sequential_cross_scale_order
from .selective_scan import selective_scan, selective_scan_ref

__all__ = [
    "scan_order",
    "cross_scale_order",
    "sequential_cross_scale_order",
    "inverse_order",
    "ScanDirection",
    "CROSS_SCALE_MODES",
    "selective_scan",
    "selective_scan_ref",
    "directional_scan",
    "ChannelGate",
]

__version__ = "0.1.0"
