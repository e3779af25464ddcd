"""Weight initialisers of the original (Haiku) code, expressed with Flax's initialisers.

Initial values matter for HMC and SGD only as starting points (the prior, not the
initialiser, defines the posterior), but matching them keeps the starting scale of every
activation, and so the first iterations, comparable with the original runs.
"""

from __future__ import annotations

import flax.linen as nn

__all__ = ["he_normal", "haiku_default"]

# Haiku's ``VarianceScaling(2.0, "fan_in", "truncated_normal")``, used by the original for
# every ResNet convolution and its output layer. Both libraries correct the truncated
# normal's standard deviation so that the variance is exactly 2 / fan_in.
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")

# Haiku's default for ``Linear`` and ``Conv``: ``TruncatedNormal(stddev=1/sqrt(fan_in))``,
# truncated at two standard deviations *without* the variance correction. Flax's
# variance_scaling divides the stddev by 0.8796 (the std of a unit normal truncated at +-2),
# so scaling the variance by 0.8796^2 gives exactly Haiku's distribution.
_TRUNCATED_STD = 0.87962566103423978
haiku_default = nn.initializers.variance_scaling(_TRUNCATED_STD**2, "fan_in", "truncated_normal")
