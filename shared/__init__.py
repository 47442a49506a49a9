"""medact's shared core: one training engine, MATLAB-style options, min-max normalisation, metric maths.

No task-specific code lives here; ``medseg`` and ``action`` build on it.
"""

import importlib

__all__ = ["EngineHooks", "MinMax", "MinMaxd", "TrainingOptions", "build_evaluator", "build_trainer"]

# Imported on first use (PEP 562): `shared.io` and other light modules must not pull in torch,
# MONAI and Ignite (about 10 s of imports), or every command-line start would pay for them.
_HOME = {
    "EngineHooks": "shared.engine",
    "build_evaluator": "shared.engine",
    "build_trainer": "shared.engine",
    "TrainingOptions": "shared.options",
    "MinMax": "shared.rescale",
    "MinMaxd": "shared.transforms",
}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'shared' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
