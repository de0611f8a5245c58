"""Unconditional flows f_w: image Glow, 2-D Glow and 2-D FFJORD."""

from scnf.flows.ffjord import FFJORD
from scnf.flows.glow import MultiScaleGlow, VectorGlow, plan_levels

__all__ = ["FFJORD", "MultiScaleGlow", "VectorGlow", "plan_levels"]
