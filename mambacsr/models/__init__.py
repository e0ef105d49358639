"""The networks and their parts."""

from .blocks import RLMB, RLMG, CrossScaleBlock, MambaIRBlock
from .layers import CAB, ChannelGate, Mlp
from .networks import MambaCSR, MambaIR
from .scan_pattern import block_directions, parse_directions
from .self_ensemble import SelfEnsemble
from .ss2d import SS2D

__all__ = ["MambaCSR", "MambaIR", "RLMB", "RLMG", "CrossScaleBlock", "MambaIRBlock", "SS2D", "CAB", "ChannelGate",
           "Mlp", "SelfEnsemble", "block_directions", "parse_directions"]
