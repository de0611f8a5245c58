"""Baselines measured on the project's label splits: Kingma et al. (2014) M1, M2 and M1+M2.

``scnf baseline-m1`` trains the VAE M1 once on all training images (no labels);
``scnf baseline-m2`` trains M2 on raw pixels (``model: m2``) or on M1's latent
(``model: m1m2``) for one label split and writes a ``metrics.json`` that Table 2 reads.
"""

from scnf.baselines.config import M1Config, M1M2Config, M2Config
from scnf.baselines.m1 import M1
from scnf.baselines.m2 import M2
from scnf.baselines.train import train_m1, train_m2

__all__ = ["M1", "M2", "M1Config", "M2Config", "M1M2Config", "train_m1", "train_m2"]
