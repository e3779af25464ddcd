"""The paper's architectures: parameter counts from the layer lists, shapes, FRN, LSTM cell."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_bnn.models import MODELS, FilterResponseNorm, get_model
from ppl_bnn.models.cnn_lstm import HaikuLSTMCell
from ppl_bnn.models.initializers import haiku_default, he_normal
from ppl_bnn.models.resnet import frn


def conv(k, cin, cout):  # a k x k (or length-k, with k=k) convolution with bias
    return k * cin * cout + cout


def dense(cin, cout):
    return cin * cout + cout


def frn_params(c):  # gamma, beta, tau
    return 3 * c


# LeNet: three 5x5 SAME convs, each followed by MaxPool(3, stride 2, VALID):
# MNIST 28 -> 13 -> 6 -> 2 (2*2*120 = 480 features), CIFAR 32 -> 15 -> 7 -> 3 (1080).
LENET_MNIST = conv(25, 1, 6) + conv(25, 6, 16) + conv(25, 16, 120) + dense(480, 84) + dense(84, 10)
LENET_CIFAR = conv(25, 3, 6) + conv(25, 6, 16) + conv(25, 16, 120) + dense(1080, 84) + dense(84, 10)


def _resnet20(num_classes):
    total = conv(9, 3, 16) + frn_params(16)  # stem
    cin = 16
    for width in (16, 32, 64):
        for _ in range(3):  # blocks
            total += conv(9, cin, width) + frn_params(width)  # conv1
            total += conv(9, width, width) + frn_params(width)  # conv2
            if cin != width:  # projection shortcut in the first block of stages 2, 3
                total += conv(1, cin, width) + frn_params(width)
            cin = width
    return total + dense(64, num_classes)  # AvgPool 8x8 -> 1x1x64 -> Dense


# Embed 20000x128; Conv1D k5 128->64; LSTM: one Dense(4*128) on [x (64), h (128)]; Dense 2
CNN_LSTM = 20000 * 128 + conv(5, 128, 64) + dense(64 + 128, 4 * 128) + dense(128, 2)


@pytest.mark.parametrize(
    "name, shape, dtype, classes, expected",
    [
        ("lenet", (28, 28, 1), jnp.float32, 10, LENET_MNIST),
        ("lenet", (32, 32, 3), jnp.float32, 10, LENET_CIFAR),
        ("resnet20_frn", (32, 32, 3), jnp.float32, 10, _resnet20(10)),
        ("resnet20_frn_swish", (32, 32, 3), jnp.float32, 100, _resnet20(100)),
        ("cnn_lstm", (100,), jnp.int32, 2, CNN_LSTM),
    ],
)
def test_parameter_count_and_output_shape(name, shape, dtype, classes, expected):
    net = get_model(name, classes)
    x = jax.ShapeDtypeStruct((3, *shape), dtype)
    params = jax.eval_shape(net.init, jax.random.key(0), x)
    assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params)) == expected
    out = jax.eval_shape(net.apply, params, x)
    assert out.shape == (3, classes)


def test_known_totals():
    # the totals themselves, as a check on the arithmetic above
    assert (LENET_MNIST, LENET_CIFAR) == (91_946, 142_646)
    assert _resnet20(10) == 274_042
    assert CNN_LSTM == 2_700_098


def test_registry_names():
    for name in ("lenet", "resnet20_frn", "resnet20_frn_swish", "cnn_lstm"):
        assert name in MODELS
    assert get_model("resnet20_frn", 10).activation is jax.nn.relu
    assert get_model("resnet20_frn_swish", 10).activation is jax.nn.swish


# Hand-computed FRN: x of one example, 2x2 spatial, 2 channels.
# channel 0 = [[1, 2], [3, 4]]: nu2 = (1 + 4 + 9 + 16) / 4 = 7.5, 1/sqrt(7.5) = 0.36514837;
#   gamma 2, beta -0.5, tau 0.5 -> max(2 x / sqrt(7.5) - 0.5, 0.5)
#   = [0.5, 0.96059348, 1.69089023, 2.42118697]
# channel 1 = [[-3, 0], [0, 4]]: nu2 = (9 + 16) / 4 = 6.25, 1/sqrt = 0.4;
#   gamma 1, beta 0, tau -1 -> max(0.4 x, -1) = [-1, 0, 0, 1.6]
FRN_X = np.array([[[[1.0, -3.0], [2.0, 0.0]], [[3.0, 0.0], [4.0, 4.0]]]], np.float32)
FRN_GAMMA, FRN_BETA, FRN_TAU = (np.array(v, np.float32) for v in ([2, 1], [-0.5, 0], [0.5, -1]))
FRN_EXPECTED = np.array(
    [[[[0.5, -1.0], [0.96059348, 0.0]], [[1.69089023, 0.0], [2.42118697, 1.6]]]], np.float32
)


def test_frn_hand_computed():
    out = frn(jnp.asarray(FRN_X), FRN_GAMMA, FRN_BETA, FRN_TAU, eps=1e-6)
    np.testing.assert_allclose(out, FRN_EXPECTED, rtol=1e-6, atol=1e-6)


def test_frn_layer_parameters_and_no_batch_dependence():
    layer = FilterResponseNorm()
    params = layer.init(jax.random.key(0), FRN_X)["params"]
    assert {k: v.shape for k, v in params.items()} == {"gamma": (2,), "beta": (2,), "tau": (2,)}
    np.testing.assert_array_equal(params["gamma"], 1.0)
    np.testing.assert_array_equal(params["beta"], 0.0)
    np.testing.assert_array_equal(params["tau"], 0.0)
    params = {"gamma": FRN_GAMMA, "beta": FRN_BETA, "tau": FRN_TAU}
    np.testing.assert_allclose(layer.apply({"params": params}, FRN_X), FRN_EXPECTED, atol=1e-6)
    # an example's output does not depend on the other examples of the batch
    other = np.random.default_rng(0).normal(size=(3, 2, 2, 2)).astype(np.float32) * 10
    batch = np.concatenate([FRN_X, other])
    np.testing.assert_allclose(layer.apply({"params": params}, batch)[:1], FRN_EXPECTED, atol=1e-6)


def test_haiku_lstm_cell_equations():
    rng = np.random.default_rng(1)
    x, h, c = (rng.normal(size=(2, n)).astype(np.float32) for n in (3, 4, 4))
    cell = HaikuLSTMCell(hidden=4)
    params = cell.init(jax.random.key(0), (h, c), x)
    (h2, c2), out = cell.apply(params, (h, c), x)
    w = np.asarray(params["params"]["gates"]["kernel"])
    b = np.asarray(params["params"]["gates"]["bias"])
    gates = np.concatenate([x, h], axis=1) @ w + b
    i, g, f, o = np.split(gates, 4, axis=1)  # Haiku's gate order
    sig = lambda v: 1 / (1 + np.exp(-v))
    c_ref = sig(f + 1.0) * c + sig(i) * np.tanh(g)  # forget gate offset +1
    np.testing.assert_allclose(c2, c_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h2, sig(o) * np.tanh(c_ref), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out, h2)


def test_cnn_lstm_uses_last_step_and_rejects_short_inputs():
    net = get_model("cnn_lstm", 2)
    tokens = np.random.default_rng(0).integers(0, 20000, (2, 100)).astype(np.int32)
    params = jax.jit(net.init)(jax.random.key(0), tokens)
    apply = jax.jit(net.apply)
    base = apply(params, tokens)
    # the first 4 tokens feed only the first conv outputs, which are pooled into LSTM step 1:
    # changing them changes the output (the recurrence carries them to the last step)
    changed = tokens.copy()
    changed[:, :4] = (changed[:, :4] + 1) % 20000
    assert not np.allclose(apply(params, changed), base)
    with pytest.raises(ValueError, match="at least 8 tokens"):
        net.init(jax.random.key(0), tokens[:, :7])


@pytest.mark.parametrize(
    "init, shape, std",
    [
        # He normal: variance exactly 2 / fan_in, fan_in = 3 * 3 * 16
        (he_normal, (3, 3, 16, 32), np.sqrt(2 / 144)),
        # Haiku's TruncatedNormal(1/sqrt(fan_in)) truncated at +-2 stddev, uncorrected:
        # the std of a unit normal truncated at +-2 is 0.8796, fan_in = 300
        (haiku_default, (300, 200), 0.87962566 / np.sqrt(300)),
    ],
)
def test_initialiser_scale(init, shape, std):
    w = np.asarray(init(jax.random.key(0), shape, jnp.float32))
    # n >= 14,000 draws: the std estimate has a relative standard error below 1%
    assert abs(w.std() / std - 1) < 0.04
    # both truncate at two standard deviations of the untruncated normal, std / 0.8796
    assert np.abs(w).max() <= 2 * std / 0.87962566 * 1.0001
