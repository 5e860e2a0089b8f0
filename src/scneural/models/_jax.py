"""The only module of scneural that imports scvi-tools' JAX classes.

scvi-tools 1.5 removed its JAX base classes; keeping every import of them here means a
future port touches one file.
"""

from __future__ import annotations

JAX_INSTALL_HINT = 'backend="jax" needs the optional JAX dependencies: pip install "scneural[jax]"'


def require_jax() -> None:
    """Raise an ImportError that says how to install JAX support when it is missing."""
    try:
        import flax  # noqa: F401
        import jax  # noqa: F401
        import optax  # noqa: F401
        from scvi.module.base import JaxBaseModuleClass  # noqa: F401
        from scvi.train import JaxTrainingPlan  # noqa: F401
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(JAX_INSTALL_HINT) from err
