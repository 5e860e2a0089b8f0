"""Tools that train or apply models and write results into ``adata`` (``sn.tl.*``)."""

from ._classify import classify
from ._deep_cluster import deep_cluster
from ._image_features import image_features, image_gene_association
from ._perturb import perturb

__all__ = ["classify", "deep_cluster", "image_features", "image_gene_association", "perturb"]
