"""scnf: Semi-Conditional Normalizing Flows (Atanov et al., 2019) in PyTorch."""

from scnf.model import SCNF
from scnf.presets import PRESETS, make_model, preset_options

__all__ = ["PRESETS", "SCNF", "make_model", "preset_options"]
__version__ = "0.1.0"
