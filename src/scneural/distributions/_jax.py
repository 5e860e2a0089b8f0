"""Negative binomial and zero-inflated negative binomial log-likelihoods in JAX.

Parametrised as :class:`scvi.distributions.NegativeBinomial` and
:class:`scvi.distributions.ZeroInflatedNegativeBinomial`: mean ``mu``, inverse dispersion
``theta`` and zero-inflation logits ``zi_logits`` (probability of an extra zero
``sigmoid(zi_logits)``).

Written to stay accurate in float32 over extreme dispersions: the gamma-function ratio goes
through :func:`jax.scipy.special.betaln` (which avoids the cancellation of
``lgamma(x + theta) - lgamma(theta)`` for large ``theta``) and the probability terms through
``log1p``, so the Poisson limit (``theta -> inf``) and strong overdispersion
(``theta -> 0``) are both handled without an ``eps``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import betaln, xlog1py


def _log_nb_zero(mu: jax.Array, theta: jax.Array) -> jax.Array:
    """``log NB(0 | mu, theta) = theta * log(theta / (theta + mu))``."""
    return -theta * jnp.log1p(mu / theta)


@jax.jit
def log_nb_positive(x: jax.Array, mu: jax.Array, theta: jax.Array) -> jax.Array:
    """Elementwise log-probability of counts ``x`` under NB(mean ``mu``, inverse dispersion ``theta``).

    Parameters
    ----------
    x
        Counts (non-negative; integers stored as floats).
    mu
        Means, positive; broadcast against ``x``.
    theta
        Inverse dispersions, positive; broadcast against ``x`` (e.g. one per gene).

    Returns
    -------
    Array of ``log p(x)`` with the broadcast shape of the inputs.
    """
    x, mu, theta = jnp.broadcast_arrays(
        *(jnp.asarray(a, dtype=jnp.result_type(float, a)) for a in (x, mu, theta))
    )
    # lgamma(x + theta) - lgamma(theta) - lgamma(x + 1) = -betaln(x + 1, theta) - log(x + theta)
    log_binom = -betaln(x + 1.0, theta) - jnp.log(x + theta)
    return log_binom + _log_nb_zero(mu, theta) - xlog1py(x, theta / mu)


@jax.jit
def log_zinb_positive(
    x: jax.Array, mu: jax.Array, theta: jax.Array, zi_logits: jax.Array
) -> jax.Array:
    """Elementwise log-probability of counts ``x`` under a zero-inflated NB.

    Parameters
    ----------
    x, mu, theta
        As in :func:`log_nb_positive`.
    zi_logits
        Logits of the zero-inflation probability (``sigmoid(zi_logits)`` extra zeros).

    Returns
    -------
    Array of ``log p(x)`` with the broadcast shape of the inputs.
    """
    x = jnp.asarray(x)
    log_pi = jax.nn.log_sigmoid(zi_logits)  # log P(structural zero)
    log_one_minus_pi = jax.nn.log_sigmoid(-zi_logits)
    case_zero = jnp.logaddexp(log_pi, log_one_minus_pi + _log_nb_zero(mu, theta))
    case_non_zero = log_one_minus_pi + log_nb_positive(x, mu, theta)
    return jnp.where(x > 0, case_non_zero, case_zero)
