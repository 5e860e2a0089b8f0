"""Tools that train or apply models and write results into ``adata`` (``sn.tl.*``)."""

from ._classify import classify
from ._deep_cluster import deep_cluster

__all__ = ["classify", "deep_cluster"]
