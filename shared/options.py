"""``TrainingOptions``: MATLAB ``trainingOptions`` under Python names.

Every option keeps MATLAB's meaning and default (R2024b documentation), written
in snake_case: ``InitialLearnRate`` -> ``initial_learn_rate``. The exceptions,
each for a stated reason:

- ``solver`` defaults to ``"adam"``: MATLAB has no default (the solver name is a
  required argument); Adam is what both seed papers train with.
- ``seed`` defaults to ``0``: MATLAB has no seed option but starts every session
  with ``rng default`` (Mersenne twister, seed 0); a fixed seed gives the same
  reproducibility by default. ``None`` leaves the global RNGs alone.
- ``learn_rate_schedule="cosine"`` anneals over ``max_epochs`` (MATLAB R2024b
  offers ``"cosine"`` too; periods are not modelled).
- ``learn_rate_schedule="polynomial"`` (MATLAB R2024b's name) drops the rate every iteration
  over the whole training as ``(1 - t / T) ** 0.9``: nnU-Net's exponent (:data:`POLY_POWER`).

Example:
    >>> opts = TrainingOptions("sgdm", max_epochs=5, mini_batch_size=16)
    >>> opts.learn_rate            # MATLAB's sgdm default
    0.01
    >>> TrainingOptions.from_dict({"Solver": "adam", "MaxEpochs": 2}).max_epochs
    2
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.io import atomic_write_text

SOLVERS = ("adam", "sgdm", "rmsprop")
SHUFFLE = ("once", "every-epoch", "never")
SCHEDULES = ("none", "piecewise", "cosine", "polynomial")
#: exponent of the ``"polynomial"`` schedule (nnU-Net's ``PolyLRScheduler``)
POLY_POWER = 0.9
CLIP_METHODS = ("l2norm", "global-l2norm", "absolute-value")
CHECKPOINT_UNITS = ("epoch", "iteration")
PLOTS = ("none", "training-progress")
ENVIRONMENTS = ("auto", "cpu", "gpu")
OUTPUT_NETWORK = ("last-iteration", "best-validation")

# MATLAB: InitialLearnRate is 0.01 for sgdm and 0.001 for adam/rmsprop;
# SquaredGradientDecayFactor is 0.999 for adam and 0.9 for rmsprop.
_SOLVER_LEARN_RATE = {"sgdm": 0.01, "adam": 1e-3, "rmsprop": 1e-3}
_SOLVER_SQUARED_DECAY = {"adam": 0.999, "rmsprop": 0.9, "sgdm": None}


class OptionError(ValueError):
    """An invalid training option: the message names the option, the value and what is allowed."""


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """Training options with MATLAB ``trainingOptions`` names, defaults and checks.

    Args:
        solver: ``"adam"``, ``"sgdm"`` (SGD with momentum) or ``"rmsprop"``.
        initial_learn_rate: first learning rate; ``None`` = solver default (0.01 sgdm, 0.001 otherwise).
        max_epochs: passes over the training data (MATLAB default 30).
        mini_batch_size: samples per iteration (default 128).
        shuffle: ``"once"`` (one fixed permutation before training, MATLAB default),
            ``"every-epoch"`` or ``"never"``.
        validation_frequency: validate every N iterations (default 50); also at iteration 1 and
            at the last iteration, as MATLAB does. ``"epoch"`` (not in MATLAB): at the end of every
            epoch, whatever its length (the video and feature models' default).
        validation_patience: stop after this many validations without improving the objective
            (default ``inf``: never stop early).
        max_minutes: stop after this many minutes of training, validation included and a resumed run counted from
            its first start (default ``inf``). Not in MATLAB: ``medseg plan --train-minutes`` fits the iterations to
            a time budget from a probe of this machine and sets this as the stop when the machine is slower than probed.
        objective_metric_name: what validation patience and ``output_network="best-validation"``
            watch: ``"loss"`` (MATLAB default, lower is better) or the key metric's name (higher is better).
        output_network: ``"last-iteration"`` or ``"best-validation"`` weights after training.
        l2_regularization: L2 factor (default 1e-4) on weights and on normalisation scale and offset
            (MATLAB's ``ScaleL2Factor = OffsetL2Factor = 1`` of its normalisation layers); the biases of other
            layers get none (``BiasL2Factor = 0``). :func:`shared.engine.build_optimizer` groups them so.
        gradient_threshold: clip gradients above this (default ``inf``: no clipping).
        gradient_threshold_method: ``"l2norm"`` (per parameter tensor, MATLAB default),
            ``"global-l2norm"`` or ``"absolute-value"``.
        momentum: sgdm momentum (0.9). gradient_decay_factor: Adam beta1 (0.9).
        squared_gradient_decay_factor: Adam beta2 / RMSProp alpha; ``None`` = solver default.
        epsilon: solver denominator offset (1e-8).
        learn_rate_schedule: ``"none"``, ``"piecewise"``, ``"cosine"`` (per epoch) or
            ``"polynomial"`` (per iteration, to 0 at the last iteration).
        learn_rate_drop_factor: piecewise schedule: multiply the rate by this (0.1) ...
        learn_rate_drop_period: ... every this many epochs (10).
        checkpoint_path: directory for resumable checkpoints (``None``: no checkpoints).
        checkpoint_frequency: save every N ...
        checkpoint_frequency_unit: ... ``"epoch"`` or ``"iteration"``.
        plots: ``"none"`` or ``"training-progress"`` (a PNG refreshed during training).
        verbose: print MATLAB's progress table ...
        verbose_frequency: ... every N iterations (50).
        execution_environment: where training runs: ``"auto"`` (CUDA if available), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``, or MATLAB's ``"gpu"``, ``"multi-gpu"`` (one process per GPU under
            ``torchrun``) and ``"parallel"``; see :mod:`shared.devices`.
        precision: ``"fp32"`` (default), ``"bf16"``, ``"fp16"`` (CUDA; with a gradient scaler) or ``"auto"``
            (bf16 on CUDA; on a CPU only where a probe finds bf16 faster); autocast, weights stay fp32.
        deterministic: ask cuDNN for deterministic kernels (``cudnn.benchmark`` off). Default ``False``:
            cuDNN picks the fastest kernels, as nnU-Net does; seeds still fix data order and weights.
        seed: seed for torch, numpy and random (``None``: leave them alone).
        sequence_length: how a mini-batch of unequal-length sequences is shaped: ``"longest"``
            (pad to the longest, MATLAB default), ``"shortest"`` (truncate to the shortest) or a
            positive integer N (pad to a multiple of N); see :mod:`shared.sequences`.
        sequence_padding_direction: ``"right"`` (MATLAB default) or ``"left"``.
        sequence_padding_value: value of padded steps (0). Padding never changes a prediction:
            the batch's mask tells the recurrent and attention layers which steps are real.
    """

    solver: str = "adam"
    initial_learn_rate: float | None = None
    max_epochs: int = 30
    mini_batch_size: int = 128
    shuffle: str = "once"
    validation_frequency: int | str = 50
    validation_patience: float = math.inf
    max_minutes: float = math.inf
    objective_metric_name: str = "loss"
    output_network: str = "last-iteration"
    l2_regularization: float = 1e-4
    gradient_threshold: float = math.inf
    gradient_threshold_method: str = "l2norm"
    momentum: float = 0.9
    gradient_decay_factor: float = 0.9
    squared_gradient_decay_factor: float | None = None
    epsilon: float = 1e-8
    learn_rate_schedule: str = "none"
    learn_rate_drop_factor: float = 0.1
    learn_rate_drop_period: int = 10
    checkpoint_path: str | None = None
    checkpoint_frequency: int = 1
    checkpoint_frequency_unit: str = "epoch"
    plots: str = "none"
    verbose: bool = True
    verbose_frequency: int = 50
    execution_environment: str = "auto"
    precision: str = "fp32"
    deterministic: bool = False
    seed: int | None = 0
    sequence_length: str | int = "longest"
    sequence_padding_direction: str = "right"
    sequence_padding_value: float = 0.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            checked = _VALIDATORS[field.name](field.name, getattr(self, field.name))
            object.__setattr__(self, field.name, checked)

    @property
    def learn_rate(self) -> float:
        """The initial learning rate in effect (the solver's MATLAB default when not given)."""
        return self.initial_learn_rate if self.initial_learn_rate is not None else _SOLVER_LEARN_RATE[self.solver]

    @property
    def squared_decay(self) -> float | None:
        """Adam beta2 / RMSProp alpha in effect (``None`` for sgdm)."""
        if self.squared_gradient_decay_factor is not None:
            return self.squared_gradient_decay_factor
        return _SOLVER_SQUARED_DECAY[self.solver]

    def replace(self, **changes: Any) -> TrainingOptions:
        """Return a copy with ``changes`` applied (and validated)."""
        return TrainingOptions.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON/YAML-safe dict; infinities are written as the string ``"Inf"`` (MATLAB's spelling)."""
        return {f.name: ("Inf" if _is_inf(getattr(self, f.name)) else getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingOptions:
        """Build from a mapping; keys may be snake_case or MATLAB's ``CamelCase`` (``"MaxEpochs"``)."""
        return cls(**cls.normalise_names(data))

    @classmethod
    def normalise_names(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` with snake_case option names (values unchecked); an unknown name is an :class:`OptionError`."""
        if not isinstance(data, Mapping):
            raise OptionError(f"TrainingOptions.from_dict expects a mapping of option names to values, got {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in data.items():
            name = _snake_case(str(key))
            name = "solver" if name == "solver_name" else name  # MATLAB's positional solverName, passed by name
            if name not in known:
                hint = difflib.get_close_matches(name, sorted(known), n=1)
                suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
                raise OptionError(f"TrainingOptions has no option '{key}'.{suggestion} Allowed: {', '.join(sorted(known))}.")
            kwargs[name] = value
        return kwargs

    def save(self, path: str | Path) -> Path:
        """Write the options to ``path`` as JSON (``.json``) or YAML (``.yaml``/``.yml``), atomically."""
        path = Path(path)
        fmt = _format_of(path)
        if fmt == "json":
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        else:
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        return atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | Path) -> TrainingOptions:
        """Read options from a JSON or YAML file written by :meth:`save` (or by hand)."""
        return cls(**cls.read_changes(path))

    @classmethod
    def read_changes(cls, path: str | Path) -> dict[str, Any]:
        """Only the options a JSON/YAML file sets (snake_case names, checked), to apply over other defaults.

        A caller with defaults of its own (``python -m action train``) must not take the values
        a file leaves out from MATLAB's defaults: that would undo its defaults silently.
        """
        path = Path(path)
        fmt = _format_of(path)
        if not path.is_file():
            raise FileNotFoundError(f"Training options file not found: {path}")
        text = path.read_text(encoding="utf-8")
        try:
            if fmt == "json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as err:  # json.JSONDecodeError or yaml.YAMLError
            raise OptionError(f"{path}: not valid {fmt.upper()}: {err}") from err
        try:
            changes = cls.normalise_names(data or {})
            return {name: _VALIDATORS[name](name, value) for name, value in changes.items()}
        except OptionError as err:
            raise OptionError(f"{path}: {err}") from err


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise OptionError(f"Training options file {path}: unknown format '{suffix}'; expected .json, .yaml or .yml.")


def _snake_case(name: str) -> str:
    """``"MiniBatchSize"`` -> ``"mini_batch_size"``; ``"L2Regularization"`` -> ``"l2_regularization"``."""
    if "_" in name or name.islower():
        return name.lower()
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _is_inf(value: Any) -> bool:
    return isinstance(value, float) and math.isinf(value)


def _bad(name: str, value: Any, expected: str) -> OptionError:
    return OptionError(f"TrainingOptions: {name}={value!r} is invalid; expected {expected}.")


def _number(name: str, value: Any, expected: str) -> float:
    if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", "infinity"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(name, value, expected)
    value = float(value)
    if math.isnan(value):
        raise _bad(name, value, expected)
    return value


def _choice(allowed: tuple[str, ...]):
    def check(name: str, value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in allowed:
            return value.strip().lower()
        raise _bad(name, value, "one of " + ", ".join(repr(a) for a in allowed))

    return check


def _positive_int(allow_inf: bool = False, also: str | None = None):
    expected = "a positive integer" + (" or Inf" if allow_inf else "") + (f" or {also!r}" if also else "")

    def check(name: str, value: Any) -> int | float | str:
        if also is not None and isinstance(value, str) and value.strip().lower() == also:
            return also
        number = _number(name, value, expected)
        if math.isinf(number) and allow_inf and number > 0:
            return math.inf
        if math.isinf(number) or number < 1 or number != int(number):
            raise _bad(name, value, expected)
        return int(number)

    return check


def _real(low: float, high: float, low_open: bool = False, high_open: bool = False, allow_inf: bool = False, optional: bool = False):
    left, right = ("(" if low_open else "["), (")" if high_open else "]")
    expected = f"a number in {left}{low}, {high}{right}" + (" or Inf" if allow_inf else "") + (" or None" if optional else "")

    def check(name: str, value: Any) -> float | None:
        if value is None and optional:
            return None
        number = _number(name, value, expected)
        if math.isinf(number):
            if allow_inf and number > 0:
                return math.inf
            raise _bad(name, value, expected)
        too_low = number <= low if low_open else number < low
        too_high = number >= high if high_open else number > high
        if too_low or too_high:
            raise _bad(name, value, expected)
        return number

    return check


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # MATLAB logicals
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _bad(name, value, "true or false")


def _optional_path(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (str, Path)):
        return str(value)
    raise _bad(name, value, "a directory path or None")


def _device(name: str, value: Any) -> str:
    from shared.devices import DeviceError, check_device_name

    try:
        check_device_name(value)
    except DeviceError:
        raise _bad(name, value, "auto, cpu, cuda, cuda:N, gpu, multi-gpu or parallel") from None
    return str(value).strip().lower()


def _precision(name: str, value: Any) -> str:
    from shared.devices import DeviceError, check_precision_name

    try:
        return check_precision_name(value)
    except DeviceError:
        raise _bad(name, value, "fp32, bf16, fp16 or auto") from None


def _seed(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 2**32:
        raise _bad(name, value, "an integer in [0, 2**32) or None")
    return value


def _sequence_length(name: str, value: Any) -> str | int:
    if isinstance(value, str) and value.strip().lower() in ("longest", "shortest"):
        return value.strip().lower()
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 1 and float(value).is_integer():
        return int(value)
    raise _bad(name, value, "'longest', 'shortest' or a positive integer")


def _finite(name: str, value: Any) -> float:
    number = _number(name, value, "a finite number")
    if math.isinf(number):
        raise _bad(name, value, "a finite number")
    return number


def _metric_name(name: str, value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise _bad(name, value, "'loss' or the name of a validation metric")


_VALIDATORS = {
    "solver": _choice(SOLVERS),
    "initial_learn_rate": _real(0.0, math.inf, low_open=True, high_open=True, optional=True),
    "max_epochs": _positive_int(),
    "mini_batch_size": _positive_int(),
    "shuffle": _choice(SHUFFLE),
    "validation_frequency": _positive_int(also="epoch"),
    "validation_patience": _positive_int(allow_inf=True),
    "max_minutes": _real(0.0, math.inf, low_open=True, high_open=True, allow_inf=True),
    "objective_metric_name": _metric_name,
    "output_network": _choice(OUTPUT_NETWORK),
    "l2_regularization": _real(0.0, math.inf, high_open=True),
    "gradient_threshold": _real(0.0, math.inf, low_open=True, high_open=True, allow_inf=True),
    "gradient_threshold_method": _choice(CLIP_METHODS),
    "momentum": _real(0.0, 1.0),
    "gradient_decay_factor": _real(0.0, 1.0, high_open=True),
    "squared_gradient_decay_factor": _real(0.0, 1.0, high_open=True, optional=True),
    "epsilon": _real(0.0, math.inf, low_open=True, high_open=True),
    "learn_rate_schedule": _choice(SCHEDULES),
    "learn_rate_drop_factor": _real(0.0, 1.0),
    "learn_rate_drop_period": _positive_int(),
    "checkpoint_path": _optional_path,
    "checkpoint_frequency": _positive_int(),
    "checkpoint_frequency_unit": _choice(CHECKPOINT_UNITS),
    "plots": _choice(PLOTS),
    "verbose": _boolean,
    "verbose_frequency": _positive_int(),
    "execution_environment": _device,
    "precision": _precision,
    "deterministic": _boolean,
    "seed": _seed,
    "sequence_length": _sequence_length,
    "sequence_padding_direction": _choice(("right", "left")),
    "sequence_padding_value": _finite,
}
