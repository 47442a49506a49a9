"""medact's shared core: one training engine, MATLAB-style options, min-max normalisation, metric maths.

No task-specific code lives here; ``medseg`` and ``action`` build on it.
"""

from shared.engine import EngineHooks, build_evaluator, build_trainer
from shared.options import TrainingOptions
from shared.transforms import MinMax, MinMaxd

__all__ = ["EngineHooks", "MinMax", "MinMaxd", "TrainingOptions", "build_evaluator", "build_trainer"]
