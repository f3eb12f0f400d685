"""The speed paths give what the plain formulas give: the encoder's transposed attention, LoRA's one-addmm update,
the next-token accuracy from one amax pass, the decoder's unmasked attention for one new token (issue 26)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from peft_studio.core.bases.decoder import causal_attention
from peft_studio.core.bases.encoder import EncoderConfig, SelfAttention
from peft_studio.core.methods.lora_layers import LoraLinear
from peft_studio.core.model.next_token import IGNORED, NextTokenCrossEntropy, argmax_hits


def _plain_attention(attention: SelfAttention, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """softmax(q k^T / sqrt(d), padded keys masked) v, written out as the encoder computed it before."""
    q, k, v = (attention.split_heads(proj(x)) for proj in (attention.q, attention.k, attention.v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    probs = F.softmax(scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min), dim=-1)
    context = (probs @ v).transpose(1, 2).reshape(x.shape)
    return attention.o(context), probs


def test_encoder_attention_equals_the_written_out_softmax():
    torch.manual_seed(0)
    attention = SelfAttention(EncoderConfig(vocab_size=10, d_model=24, n_heads=3))
    x = torch.randn(3, 7, 24)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3, [False] * 7])  # a row with no real key at all
    attention.keep_probs = True
    out = attention(x, mask)
    expected, probs = _plain_attention(attention, x, mask)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(attention.probs, probs, rtol=0, atol=1e-6)
    assert attention.probs.shape == (3, 3, 7, 7) and bool((attention.probs[1, :, :, 4:] == 0).all())


def test_lora_update_in_one_addmm_equals_the_formula():
    torch.manual_seed(0)
    layer = LoraLinear(nn.Linear(6, 5), r=3, alpha=7.0, dropout=0.0, init="false")  # B != 0: a real update
    x = torch.randn(2, 4, 6)
    expected = layer.base_layer(x) + (x @ layer.lora_A.T @ layer.lora_B.T) * layer.scaling
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-6)
    wide = LoraLinear(_Float64Output(6, 5), r=3, alpha=7.0, dropout=0.0, init="false")  # the promoting formula
    expected = wide.base_layer(x) + (x @ wide.lora_A.T @ wide.lora_B.T) * wide.scaling
    assert expected.dtype == torch.float64 and torch.equal(wide(x), expected)


class _Float64Output(nn.Linear):
    """A frozen layer whose output is in another dtype than LoRA's tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).double()


def test_accuracy_hits_are_argmax_bit_for_bit():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    logits[0, 0, [2, 6]] = 9.0  # a tie: argmax takes the first
    logits[0, 1, [2, 6]] = 9.0
    logits[1, 2, 4] = float("nan")  # NaN: argmax points at it
    targets = logits.argmax(-1)
    targets[0, 0], targets[0, 1] = 2, 6  # a tie's first index is a hit, its second a miss
    targets[2, ::2] = torch.randint(0, 11, (3,))
    targets[2, 1] = IGNORED
    expected = (logits.argmax(-1) == targets) & (targets >= 0)
    assert torch.equal(argmax_hits(logits, targets), expected)
    assert bool(expected[0, 0]) and not bool(expected[0, 1]) and bool(expected[1, 2])


def test_one_new_token_attends_unmasked_as_the_masked_path():
    torch.manual_seed(0)
    prefix, past = 2, 5
    keys = prefix + past + 1
    q, k, v = torch.randn(2, 6, 1, 8), torch.randn(2, 3, keys, 8), torch.randn(2, 3, keys, 8)  # grouped query heads
    mask = torch.ones(2, keys, dtype=torch.bool)
    fast = causal_attention(q, k, v, mask, prefix=prefix)
    masked = causal_attention(q, k, v, mask, prefix=prefix, implementation="eager")
    torch.testing.assert_close(fast, masked, rtol=0, atol=1e-6)
    full = torch.randn(2, 6, 4, 8), torch.randn(2, 3, 4, 8), torch.randn(2, 3, 4, 8)  # causal, no cache
    torch.testing.assert_close(causal_attention(*full, torch.ones(2, 4, dtype=torch.bool)),
                               causal_attention(*full, torch.ones(2, 4, dtype=torch.bool), implementation="eager"),
                               rtol=0, atol=1e-6)


def test_next_token_cross_entropy_and_its_gradient_equal_torchs():
    torch.manual_seed(0)
    logits = (torch.randn(12, 50) * 4).requires_grad_(True)
    targets = torch.randint(0, 50, (12,))
    targets[[0, 5, 11]] = IGNORED
    loss = NextTokenCrossEntropy.apply(logits, targets)
    expected = F.cross_entropy(logits, targets, ignore_index=IGNORED)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    grad, = torch.autograd.grad(loss * 3.0, logits)  # an upstream gradient other than 1
    expected_grad, = torch.autograd.grad(expected * 3.0, logits)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-7)
    assert bool((grad[[0, 5, 11]] == 0).all())
