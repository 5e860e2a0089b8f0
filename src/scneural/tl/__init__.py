"""Tools that train or apply models and write results into ``adata`` (``sn.tl.*``)."""

from ._classify import classify
from ._image_features import image_features, image_gene_association

__all__ = ["classify", "image_features", "image_gene_association"]
