"""The JAX NB/ZINB log-likelihoods against scvi-tools' torch distributions and scipy."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")
import jax
import jax.numpy as jnp
import torch
from scipy import stats
from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial

from scneural.distributions import log_nb_positive, log_zinb_positive

pytestmark = pytest.mark.jax


def _params(seed: int, theta_scale: float, n: int = 400):
    """Counts with many zeros and random means, inverse dispersions around ``theta_scale``."""
    rng = np.random.default_rng(seed)
    mu = rng.gamma(1.0, 5.0, size=n).astype(np.float32) + 1e-3
    theta = (theta_scale * rng.uniform(0.5, 2.0, size=n)).astype(np.float32)
    x = rng.poisson(mu).astype(np.float32)
    x[: n // 4] = 0.0
    zi_logits = rng.normal(0.0, 2.0, size=n).astype(np.float32)
    return x, mu, theta, zi_logits


def _scipy_nb(x, mu, theta):
    x, mu, theta = (np.asarray(a, dtype=np.float64) for a in (x, mu, theta))
    return stats.nbinom.logpmf(x, theta, theta / (theta + mu))


def _scipy_zinb(x, mu, theta, zi_logits):
    pi = 1.0 / (1.0 + np.exp(-np.asarray(zi_logits, dtype=np.float64)))
    nb = np.exp(_scipy_nb(x, mu, theta))
    return np.log(np.where(x == 0, pi + (1 - pi) * nb, (1 - pi) * nb))


@pytest.mark.parametrize("theta_scale", [1e-3, 0.1, 1.0, 10.0, 1e3])
def test_matches_scvi_torch(theta_scale):
    """Same values as scvi-tools' distributions (run in float64, free of float32 rounding)."""
    x, mu, theta, zi = _params(0, theta_scale)
    t = {
        k: torch.from_numpy(v.astype(np.float64))
        for k, v in {"x": x, "mu": mu, "theta": theta, "zi": zi}.items()
    }
    nb_ref = NegativeBinomial(mu=t["mu"], theta=t["theta"]).log_prob(t["x"]).numpy()
    zinb_ref = (
        ZeroInflatedNegativeBinomial(mu=t["mu"], theta=t["theta"], zi_logits=t["zi"])
        .log_prob(t["x"])
        .numpy()
        .ravel()  # scvi views a 1-d theta as (1, n)
    )
    np.testing.assert_allclose(log_nb_positive(x, mu, theta), nb_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(log_zinb_positive(x, mu, theta, zi), zinb_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("theta_scale", [1e-6, 1e-3, 1.0, 1e3, 1e6, 1e8])
def test_matches_scipy_including_extreme_dispersions(theta_scale):
    x, mu, theta, zi = _params(1, theta_scale)
    np.testing.assert_allclose(
        log_nb_positive(x, mu, theta), _scipy_nb(x, mu, theta), rtol=1e-5, atol=1e-4
    )
    np.testing.assert_allclose(
        log_zinb_positive(x, mu, theta, zi), _scipy_zinb(x, mu, theta, zi), rtol=1e-5, atol=1e-4
    )


def test_more_accurate_than_eps_formula_at_poisson_limit():
    """At theta=1e7 scvi's float32 formula loses digits; ours stays at the Poisson limit."""
    x, mu, theta, _ = _params(2, 1e7)
    ours = np.asarray(log_nb_positive(x, mu, theta))
    poisson = stats.poisson.logpmf(x.astype(np.float64), mu.astype(np.float64))
    assert np.abs(ours - poisson).max() < 1e-3
    scvi_torch = NegativeBinomial(mu=torch.from_numpy(mu), theta=torch.from_numpy(theta)).log_prob(
        torch.from_numpy(x)
    )
    assert np.abs(scvi_torch.numpy() - poisson).max() > 10 * np.abs(ours - poisson).max()


def test_zero_counts_and_broadcasting():
    mu = jnp.array([[0.5, 3.0, 40.0]])
    theta = jnp.array([2.0, 2.0, 2.0])  # one per gene, broadcast over cells
    x = jnp.zeros((4, 3))
    nb = log_nb_positive(x, mu, theta)
    assert nb.shape == (4, 3)
    np.testing.assert_allclose(nb[0], 2.0 * np.log(2.0 / (2.0 + np.asarray(mu[0]))), rtol=1e-6)
    # all mass on zero when zero-inflation is certain
    np.testing.assert_allclose(
        log_zinb_positive(x, mu, theta, jnp.full((4, 3), 30.0)), 0.0, atol=1e-6
    )
    # a normalised distribution: probabilities over 0..2000 sum to 1
    k = jnp.arange(2001.0)[:, None]
    total = jnp.exp(
        log_zinb_positive(k, jnp.array([7.0]), jnp.array([0.3]), jnp.array([0.5]))
    ).sum()
    assert abs(float(total) - 1.0) < 1e-3


def test_gradients_are_finite_and_match_finite_differences():
    x, mu, theta, zi = _params(3, 1.0, n=50)

    def total(mu, theta, zi):
        return log_zinb_positive(x, mu, theta, zi).sum()

    grads = jax.jit(jax.grad(total, argnums=(0, 1, 2)))(mu, theta, zi)
    for g in grads:
        assert np.isfinite(np.asarray(g)).all()
    # d/dmu of NB log-likelihood at x: x/mu - (x + theta)/(theta + mu), for x > 0 (ZINB: same)
    nz = x > 0
    expected = x / mu - (x + theta) / (theta + mu)
    np.testing.assert_allclose(np.asarray(grads[0])[nz], expected[nz], rtol=1e-3, atol=1e-4)
