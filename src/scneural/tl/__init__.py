"""Tools that train or apply models and write results into ``adata`` (``sn.tl.*``)."""

from ._classify import classify
from ._perturb import perturb

__all__ = ["classify"]
__all__ += ["perturb"]
