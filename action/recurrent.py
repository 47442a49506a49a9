"""Recurrent layers with MATLAB's options: ``gruLayer`` reset-gate modes and ``OutputMode``.

MATLAB's ``gruLayer`` computes, for input ``x_t`` and state ``h_{t-1}``::

    r_t = sigmoid(W_r x_t + R_r h_{t-1} + b_r)          reset gate
    z_t = sigmoid(W_z x_t + R_z h_{t-1} + b_z)          update gate
    h~_t = tanh(W_h x_t + b_Wh + <reset applied to R_h h_{t-1}>)
    h_t = (1 - z_t) * h~_t + z_t * h_{t-1}

with ``ResetGateMode``:

- ``"after-multiplication"`` (MATLAB's default): ``r_t * (R_h h_{t-1})``;
- ``"before-multiplication"`` (the papers' equations): ``R_h (r_t * h_{t-1})``;
- ``"recurrent-bias-after-multiplication"``: ``r_t * (R_h h_{t-1} + b_Rh)``, which is
  exactly ``torch.nn.GRU`` (and uses its fused kernel).

All modes keep ``torch.nn.GRU``'s parameter layout (``weight_ih_l0`` = [W_r; W_z; W_h],
``weight_hh_l0`` = [R_r; R_z; R_h], two bias vectors), so weights move between modes and a
state dict always loads. The two non-PyTorch modes run a Python loop over time steps,
with the input projections of all steps computed in one matrix product first; T is small
(20) in these models, so the loop costs microseconds per step.
"""

from __future__ import annotations

import torch
from torch import nn

RESET_GATE_MODES = ("after-multiplication", "before-multiplication", "recurrent-bias-after-multiplication")
OUTPUT_MODES = ("sequence", "last")


def _check(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}; expected one of {allowed}.")
    return value


class GRU(nn.Module):
    """MATLAB ``gruLayer``: ``(B, T, C)`` -> ``(B, T, H)`` (``output_mode="sequence"``) or ``(B, H)`` (``"last"``).

    Args:
        input_size: C; hidden_size: H (MATLAB ``NumHiddenUnits``).
        num_layers: stacked layers (dropout between them).
        reset_gate_mode: see the module docstring (MATLAB default ``"after-multiplication"``).
        output_mode: ``"sequence"`` or ``"last"`` (MATLAB ``OutputMode``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        reset_gate_mode: str = "after-multiplication",
        output_mode: str = "last",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.reset_gate_mode = _check(reset_gate_mode, RESET_GATE_MODES, "reset_gate_mode")
        self.output_mode = _check(output_mode, OUTPUT_MODES, "output_mode")
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.rnn = nn.GRU(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            raise ValueError(f"GRU expects (batch, time, features), got shape {tuple(x.shape)}.")
        if self.reset_gate_mode == "recurrent-bias-after-multiplication":
            sequence, _ = self.rnn(x)
        else:
            sequence = x
            for layer in range(self.num_layers):
                if layer > 0 and self.rnn.dropout and self.training:
                    sequence = nn.functional.dropout(sequence, self.rnn.dropout, training=True)
                sequence = self._layer(sequence, layer)
        return sequence if self.output_mode == "sequence" else sequence[:, -1]

    def _layer(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        w_ih, w_hh = getattr(self.rnn, f"weight_ih_l{layer}"), getattr(self.rnn, f"weight_hh_l{layer}")
        b_ih, b_hh = getattr(self.rnn, f"bias_ih_l{layer}"), getattr(self.rnn, f"bias_hh_l{layer}")
        hidden = self.hidden_size
        projected = torch.nn.functional.linear(x, w_ih, b_ih)  # (B, T, 3H): W x + b_W for all steps at once
        r_hh, z_hh, n_hh = w_hh.split(hidden)
        rz_weight, rz_bias = torch.cat([r_hh, z_hh]), b_hh[: 2 * hidden]
        n_bias = b_hh[2 * hidden :]
        h = x.new_zeros(x.shape[0], hidden)
        outputs = []
        for t in range(x.shape[1]):
            gx_r, gx_z, gx_n = projected[:, t].split(hidden, dim=1)
            gh_r, gh_z = torch.nn.functional.linear(h, rz_weight, rz_bias).split(hidden, dim=1)
            r, z = torch.sigmoid(gx_r + gh_r), torch.sigmoid(gx_z + gh_z)
            if self.reset_gate_mode == "after-multiplication":
                candidate = torch.tanh(gx_n + n_bias + r * (h @ n_hh.T))
            else:  # before-multiplication
                candidate = torch.tanh(gx_n + n_bias + (r * h) @ n_hh.T)
            h = (1 - z) * candidate + z * h
            outputs.append(h)
        return torch.stack(outputs, dim=1)


class LSTM(nn.Module):
    """MATLAB ``lstmLayer``: ``(B, T, C)`` -> ``(B, T, H)`` or ``(B, H)``, as :class:`GRU`."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, output_mode: str = "last", dropout: float = 0.0) -> None:
        super().__init__()
        self.output_mode = _check(output_mode, OUTPUT_MODES, "output_mode")
        self.rnn = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence, _ = self.rnn(x)
        return sequence if self.output_mode == "sequence" else sequence[:, -1]


class AttentionPooling(nn.Module):
    """Additive attention over time: ``(B, T, H)`` -> ``(B, H)`` = ``sum_t softmax_t(v . tanh(W h_t)) h_t``.

    The weights of the last call are kept in ``self.weights`` ``(B, T)`` for inspection.
    """

    def __init__(self, hidden_size: int, attention_size: int = 64) -> None:
        super().__init__()
        self.project = nn.Linear(hidden_size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)
        self.weights: torch.Tensor | None = None

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(torch.tanh(self.project(sequence))).squeeze(-1), dim=1)
        self.weights = weights.detach()
        return torch.einsum("bt,bth->bh", weights, sequence)
