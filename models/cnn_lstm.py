"""The IMDB sentiment model of the original code (``cnn_lstm``)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ppl_bnn.models.initializers import haiku_default

__all__ = ["CNNLSTM", "HaikuLSTMCell"]


class HaikuLSTMCell(nn.Module):
    """The LSTM cell of Haiku (``hk.LSTM``), which the original used.

    One ``Dense(4 * hidden)`` on ``concat(x, h)`` gives the gates in the order
    ``(i, g, f, o)``; the forget gate gets a fixed offset of +1 (not a parameter):
    ``c' = sigmoid(f + 1) c + sigmoid(i) tanh(g)``, ``h' = sigmoid(o) tanh(c')``.
    (Flax's ``LSTMCell`` has the same number of parameters but no forget offset, and the
    offset changes the posterior under a zero-mean prior on the bias.)
    """

    hidden: int

    @nn.compact
    def __call__(self, carry, x):
        h, c = carry
        gates = nn.Dense(4 * self.hidden, kernel_init=haiku_default, name="gates")(
            jnp.concatenate([x, h], axis=-1)
        )
        i, g, f, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h


class CNNLSTM(nn.Module):
    """``Embed(vocab, 128) -> Conv1D(64, 5, VALID) -> ReLU -> MaxPool(4, 4) -> LSTM(128)``,
    last time step, ``Dense(num_outputs)``.

    Inputs are integer token ids ``(batch, time)``; with 100 tokens the convolution gives 96
    steps and the pooling 24 LSTM steps, unrolled in Python as Haiku's ``static_unroll``.
    The embedding is initialised like Haiku's ``Embed`` (truncated normal, stddev 1), the
    other layers with Haiku's defaults.
    """

    num_outputs: int
    vocab_size: int = 20000
    embed_dim: int = 128
    filters: int = 64
    kernel: int = 5
    pool: int = 4
    hidden: int = 128

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(
            self.vocab_size, self.embed_dim, embedding_init=nn.initializers.truncated_normal(1.0)
        )(tokens)
        x = nn.Conv(self.filters, (self.kernel,), padding="VALID", kernel_init=haiku_default)(x)
        x = nn.max_pool(nn.relu(x), (self.pool,), strides=(self.pool,), padding="VALID")
        if x.shape[1] == 0:
            need = self.kernel - 1 + self.pool
            raise ValueError(f"cnn_lstm needs at least {need} tokens per input")
        cell = HaikuLSTMCell(self.hidden, name="lstm")
        zeros = jnp.zeros((x.shape[0], self.hidden), x.dtype)
        carry = (zeros, zeros)
        for t in range(x.shape[1]):
            carry, h = cell(carry, x[:, t])
        return nn.Dense(self.num_outputs, kernel_init=haiku_default)(h)
