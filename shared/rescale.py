"""``MinMax``: MATLAB ``rescale`` parity, the one intensity normalisation of medact, without MONAI.

``rescale(A, l, u, InputMin=m, InputMax=M)`` computes
``l + (clip(A, m, M) - m) / (M - m) * (u - l)`` with ``m``/``M`` defaulting to the
input's own minimum/maximum. MONAI's ``ScaleIntensity`` and ``ScaleIntensityRange``
each cover half of that (own range vs fixed window, no clipping of one bound,
silent NaN output on constant input), so this one transform covers both, for
volumes ``(C, H, W, D)`` and clips ``(C, T, H, W)`` alike, numpy or torch in, same
type out (MetaTensor metadata kept).

It lives apart from the MONAI dictionary transform (:class:`shared.transforms.MinMaxd`) so that
prediction can apply the very same arithmetic without importing MONAI (about 4 s of start-up).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

NAN_POLICIES = ("raise", "omit", "lower")
Bound = float | Sequence[float] | np.ndarray | torch.Tensor | None


def _as_plain_tensor(img: Any) -> torch.Tensor:
    """numpy or torch (MONAI ``MetaTensor`` included) -> a plain ``torch.Tensor`` sharing memory where it can."""
    if isinstance(img, torch.Tensor):
        return img.as_tensor() if hasattr(img, "as_tensor") else img
    return torch.as_tensor(np.asarray(img))


def _torch_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


def _like(out: torch.Tensor, img: Any, dtype: Any) -> Any:
    """``out`` as the type of ``img`` (numpy, torch, or MONAI ``MetaTensor`` with its metadata) in ``dtype``."""
    target = _torch_dtype(dtype) or out.dtype
    if isinstance(img, np.ndarray):
        return out.to(target).cpu().numpy()
    if type(img) is not torch.Tensor and "monai" in sys.modules:  # a MetaTensor: MONAI is loaded already
        from monai.utils.type_conversion import convert_to_dst_type

        return convert_to_dst_type(out, dst=img, dtype=target)[0]
    return out.to(target)


class MinMax:
    """Rescale intensities linearly to ``[lower, upper]`` (MATLAB ``rescale``).

    Args:
        lower: lower end of the target range (default 0); ``lower < upper``.
        upper: upper end of the target range (default 1).
        input_min: lower end of the source window. ``None`` = the input's own minimum
            (per channel when ``channel_wise``).
        input_max: upper end of the source window. ``None`` = the input's own maximum.
            Values outside ``[input_min, input_max]`` are clipped
            first, as in MATLAB (use them for a CT window, e.g. -1000..400 HU). Each may be a
            scalar, a 1-D sequence with one value per channel, or an array broadcastable
            against the input (MATLAB's row/column bounds).
        channel_wise: compute the own min/max of each channel (first axis) separately.
        nan_policy: what to do with NaN/Inf values: ``"raise"`` (default, ``ValueError``
            naming the input), ``"omit"`` (MATLAB: statistics from finite values only; NaN
            stays NaN, +/-Inf clip to ``upper``/``lower``) or ``"lower"`` (as ``"omit"``, then
            every non-finite value becomes ``lower`` so a network never sees NaN).
        dtype: output dtype (default float32; float64 input stays float64 when ``None``).
        name: how the input is named in errors and warnings (``MinMaxd`` passes the key).

    A constant input (or channel) maps to ``lower`` everywhere, with a warning naming it.

    Example:
        >>> MinMax()(np.array([1.0, 2, 3, 4, 5]))
        array([0.  , 0.25, 0.5 , 0.75, 1.  ], dtype=float32)
    """

    def __init__(
        self,
        lower: float = 0.0,
        upper: float = 1.0,
        input_min: Bound = None,
        input_max: Bound = None,
        channel_wise: bool = False,
        nan_policy: str = "raise",
        dtype: torch.dtype | np.dtype | type | None = torch.float32,
        name: str = "image",
    ) -> None:
        if not (np.isfinite(lower) and np.isfinite(upper)) or lower >= upper:
            raise ValueError(f"MinMax: need finite lower < upper, got lower={lower}, upper={upper}.")
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"MinMax: nan_policy={nan_policy!r} is invalid; expected one of {NAN_POLICIES}.")
        self.lower, self.upper = float(lower), float(upper)
        self.input_min, self.input_max = input_min, input_max
        self.channel_wise = channel_wise
        self.nan_policy = nan_policy
        self.dtype = dtype
        self.name = name

    def __call__(self, img: Any, name: str | None = None) -> Any:
        """Rescale ``img`` (any shape, channel first when ``channel_wise``); returns the same array type."""
        name = name or self.name
        x = _as_plain_tensor(img)
        if x.numel() == 0:
            raise ValueError(f'MinMax: "{name}" is empty (shape {tuple(x.shape)}); nothing to rescale.')
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        x = x.to(work)
        finite = self._check_finite(x, name)
        lo, hi = self._window(x, finite, name)
        if bool((lo > hi).any()):
            raise ValueError(f'MinMax: "{name}": input_min must not exceed input_max (got {self.input_min} > {self.input_max}).')
        constant = hi == lo
        # one fused affine map (2 passes over the data) instead of subtract/divide/multiply/add
        scale = (self.upper - self.lower) / torch.where(constant, torch.ones_like(hi), hi - lo)
        offset = self.lower - lo * scale
        clip = self.input_min is not None or self.input_max is not None or finite is not None
        out = torch.clamp(x, min=lo, max=hi) if clip else x
        out = torch.mul(out, scale).add_(offset)
        if bool(constant.any()):
            out = torch.where(constant, torch.as_tensor(self.lower, dtype=work), out)
            _warn_constant(name, constant, self.channel_wise, self.lower)
        if finite is not None and self.nan_policy == "lower":
            out = torch.where(finite, out, torch.as_tensor(self.lower, dtype=work))
        dtype = self.dtype if self.dtype is not None else work
        return _like(out, img, dtype)

    def _check_finite(self, x: torch.Tensor, name: str) -> torch.Tensor | None:
        """Return the finite-value mask, or ``None`` when every value is finite."""
        low, high = torch.aminmax(x)  # NaN and Inf propagate to the extremes: one pass decides the common case
        if bool(torch.isfinite(low)) and bool(torch.isfinite(high)):
            return None
        finite = torch.isfinite(x)
        if self.nan_policy == "raise":
            n_nan = int(torch.isnan(x).sum())
            n_inf = int(torch.isinf(x).sum())
            raise ValueError(
                f'MinMax: "{name}" contains {n_nan} NaN and {n_inf} Inf values (of {x.numel()}). '
                'Fix the input, or pass nan_policy="omit" (keep them, MATLAB-style) or "lower" (replace them).'
            )
        if not bool(finite.any()):
            raise ValueError(f'MinMax: "{name}" has no finite values; cannot compute its range.')
        return finite

    def _window(self, x: torch.Tensor, finite: torch.Tensor | None, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Source window ``(lo, hi)`` as tensors broadcastable against ``x``."""
        lo = self._bound(self.input_min, x, "input_min")
        hi = self._bound(self.input_max, x, "input_max")
        if lo is None or hi is None:
            data_lo, data_hi = self._own_range(x, finite)
            lo = data_lo if lo is None else lo
            hi = data_hi if hi is None else hi
        return lo, hi

    def _own_range(self, x: torch.Tensor, finite: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Minimum and maximum of the finite values, per channel when ``channel_wise``; shaped to broadcast."""
        per_channel = self.channel_wise and x.ndim > 1
        keep = (x.shape[0],) + (1,) * (x.ndim - 1) if per_channel else (1,) * x.ndim
        if finite is None:
            lo, hi = torch.aminmax(x.reshape(x.shape[0], -1) if per_channel else x.reshape(-1), dim=-1 if per_channel else None)
            return lo.reshape(keep), hi.reshape(keep)
        dims = tuple(range(1, x.ndim)) if per_channel else tuple(range(x.ndim))
        lo = torch.amin(torch.where(finite, x, torch.as_tensor(torch.inf, dtype=x.dtype)), dim=dims, keepdim=True)
        hi = torch.amax(torch.where(finite, x, torch.as_tensor(-torch.inf, dtype=x.dtype)), dim=dims, keepdim=True)
        empty = torch.isinf(lo)  # a channel with no finite value: treat as constant
        return torch.where(empty, 0.0, lo), torch.where(empty, 0.0, hi)

    @staticmethod
    def _bound(value: Bound, x: torch.Tensor, what: str) -> torch.Tensor | None:
        """A user bound as a tensor broadcastable against ``x`` (1-D of length C = one per channel)."""
        if value is None:
            return None
        bound = torch.as_tensor(np.asarray(value, dtype=np.float64) if not isinstance(value, torch.Tensor) else value)
        bound = bound.to(x.dtype)
        if bound.ndim == 1 and x.ndim > 1 and bound.numel() == x.shape[0] and bound.numel() > 1:
            bound = bound.reshape((-1,) + (1,) * (x.ndim - 1))
        if not bool(torch.isfinite(bound).all()):
            raise ValueError(f"MinMax: {what}={value} must be finite.")
        try:
            torch.broadcast_shapes(bound.shape, x.shape)
        except RuntimeError as err:
            raise ValueError(
                f"MinMax: {what} of shape {tuple(bound.shape)} does not broadcast to the input shape {tuple(x.shape)}."
            ) from err
        return bound


def _warn_constant(name: str, constant: torch.Tensor, channel_wise: bool, lower: float) -> None:
    if channel_wise and constant.ndim > 0 and constant.numel() > 1:
        channels = [int(i) for i in torch.nonzero(constant.reshape(-1)).reshape(-1)]
        where = f'channel(s) {channels} of "{name}"'
    else:
        where = f'"{name}"'
    warnings.warn(f"MinMax: {where} is constant (max == min); rescaled to lower={lower} instead of dividing by zero.", stacklevel=3)
