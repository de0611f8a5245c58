"""Semi-supervised training: config, objective (eq. 1, EM-SGD, L_clf), loop, checkpoints."""

from scnf.train.config import ConfigError, RunConfig, load_run_config, run_config_from_dict
from scnf.train.objective import objective_from_joints, semi_supervised_objective

__all__ = [
    "ConfigError",
    "RunConfig",
    "load_run_config",
    "objective_from_joints",
    "run_config_from_dict",
    "semi_supervised_objective",
]
