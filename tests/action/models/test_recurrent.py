"""action.models.recurrent: MATLAB gruLayer reset-gate modes against plain re-implementations of their equations."""

from __future__ import annotations

import pytest
import torch

from action.models.recurrent import GRU, LSTM, AttentionPooling


def _equations(gru: GRU, x: torch.Tensor, mode: str) -> torch.Tensor:
    """MATLAB's gruLayer equations written out with separate W_r, W_z, W_h, R_r, R_z, R_h (one layer)."""
    H = gru.hidden_size
    W_r, W_z, W_h = gru.rnn.weight_ih_l0.detach().split(H)
    R_r, R_z, R_h = gru.rnn.weight_hh_l0.detach().split(H)
    bW_r, bW_z, bW_h = gru.rnn.bias_ih_l0.detach().split(H)
    bR_r, bR_z, bR_h = gru.rnn.bias_hh_l0.detach().split(H)
    h = torch.zeros(x.shape[0], H)
    out = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        r = torch.sigmoid(xt @ W_r.T + h @ R_r.T + bW_r + bR_r)
        z = torch.sigmoid(xt @ W_z.T + h @ R_z.T + bW_z + bR_z)
        if mode == "after-multiplication":
            c = torch.tanh(xt @ W_h.T + bW_h + bR_h + r * (h @ R_h.T))
        elif mode == "before-multiplication":
            c = torch.tanh(xt @ W_h.T + bW_h + bR_h + (r * h) @ R_h.T)
        else:
            c = torch.tanh(xt @ W_h.T + bW_h + r * (h @ R_h.T + bR_h))
        h = (1 - z) * c + z * h
        out.append(h)
    return torch.stack(out, 1)


@pytest.mark.parametrize("mode", ["after-multiplication", "before-multiplication", "recurrent-bias-after-multiplication"])
def test_each_reset_gate_mode_matches_its_equations(mode: str) -> None:
    torch.manual_seed(0)
    gru = GRU(5, 7, reset_gate_mode=mode, output_mode="sequence")
    with torch.no_grad():
        for p in gru.parameters():
            p.uniform_(-0.8, 0.8)  # large biases so that the modes really differ
    x = torch.randn(3, 6, 5)
    torch.testing.assert_close(gru(x), _equations(gru, x, mode), atol=1e-5, rtol=1e-5)


def test_modes_differ_and_share_one_parameter_layout() -> None:
    torch.manual_seed(1)
    a = GRU(4, 6, reset_gate_mode="after-multiplication")
    with torch.no_grad():
        for p in a.parameters():
            p.uniform_(-1, 1)
    b = GRU(4, 6, reset_gate_mode="before-multiplication")
    c = GRU(4, 6, reset_gate_mode="recurrent-bias-after-multiplication")
    b.load_state_dict(a.state_dict())
    c.load_state_dict(a.state_dict())
    x = torch.randn(2, 5, 4)
    outputs = [m(x) for m in (a, b, c)]
    assert not torch.allclose(outputs[0], outputs[1], atol=1e-4) and not torch.allclose(outputs[0], outputs[2], atol=1e-4)


def test_output_modes_and_stacking() -> None:
    x = torch.randn(2, 9, 3)
    seq = GRU(3, 4, num_layers=2, output_mode="sequence", reset_gate_mode="before-multiplication")
    last = GRU(3, 4, num_layers=2, output_mode="last", reset_gate_mode="before-multiplication")
    last.load_state_dict(seq.state_dict())
    assert seq(x).shape == (2, 9, 4)
    torch.testing.assert_close(last(x), seq(x)[:, -1])
    assert LSTM(3, 4, output_mode="last")(x).shape == (2, 4)


def test_invalid_options_are_named() -> None:
    with pytest.raises(ValueError, match="reset_gate_mode='sideways'"):
        GRU(3, 4, reset_gate_mode="sideways")
    with pytest.raises(ValueError, match="output_mode='all'"):
        GRU(3, 4, output_mode="all")
    with pytest.raises(ValueError, match="expects \\(batch, time, features\\)"):
        GRU(3, 4)(torch.randn(3, 4))


def test_attention_weights_are_a_distribution_over_time() -> None:
    pool = AttentionPooling(4)
    seq = torch.randn(2, 7, 4)
    out = pool(seq)
    assert out.shape == (2, 4)
    torch.testing.assert_close(pool.weights.sum(1), torch.ones(2))
    torch.testing.assert_close(out, (pool.weights[..., None] * seq).sum(1))


@pytest.mark.parametrize("model", ["gru", "lstm", "bilstm", "attention_gru", "feature_gru"])
@pytest.mark.parametrize("direction", ["right", "left"])
def test_a_sequence_gets_the_same_logits_alone_and_padded_among_longer_ones(model: str, direction: str) -> None:
    from action.models.factory import build_model
    from shared.sequences import pad_sequences

    torch.manual_seed(0)
    net = build_model(model, 4, in_features=3).eval()
    sequences = [torch.randn(n, 3) for n in (4, 11, 7)]
    batch, mask = pad_sequences(sequences, "longest", direction, value=9.0)  # a loud padding value: it must not leak
    with torch.no_grad():
        together = net(batch, mask=mask)
        alone = torch.cat([net(s[None]) for s in sequences])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["after-multiplication", "before-multiplication", "recurrent-bias-after-multiplication"])
def test_every_reset_gate_mode_ignores_padding(mode: str) -> None:
    from shared.sequences import pad_sequences

    torch.manual_seed(2)
    gru = GRU(3, 5, reset_gate_mode=mode).eval()
    sequences = [torch.randn(n, 3) for n in (2, 6)]
    batch, mask = pad_sequences(sequences, "longest", "right", value=-3.0)
    with torch.no_grad():
        torch.testing.assert_close(gru(batch, mask), torch.cat([gru(s[None]) for s in sequences]), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(gru(batch)[0], gru(sequences[0][None])[0], atol=1e-3)  # without the mask the padding would leak
