"""Invertible layers sharing one contract: ``forward/inverse(x, context) -> (out, logdet)``."""

from scnf.layers.actnorm import ActNorm
from scnf.layers.base import Flow, FlowSequence, standard_normal_logprob
from scnf.layers.coupling import AffineCoupling, channel_mask, checkerboard_mask
from scnf.layers.invconv import InvertibleLinear
from scnf.layers.logit import Logit
from scnf.layers.reshape import Squeeze, split_channels

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "Flow",
    "FlowSequence",
    "InvertibleLinear",
    "Logit",
    "Squeeze",
    "channel_mask",
    "checkerboard_mask",
    "split_channels",
    "standard_normal_logprob",
]
