"""Tools that train or apply models and write results into ``adata`` (``sn.tl.*``)."""

from ._classify import classify

__all__ = ["classify"]
