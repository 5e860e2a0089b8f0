"""k-means initialisation of the DEC cluster centres, in Euclidean or cosine geometry."""

from __future__ import annotations

from typing import Literal

import numpy as np

Geometry = Literal["euclidean", "cosine"]
GEOMETRIES = ("euclidean", "cosine")


def check_geometry(init: str) -> None:
    """Raise a ``ValueError`` naming the ``init`` argument unless it is a known geometry."""
    if init not in GEOMETRIES:
        raise ValueError(
            f"init must be one of {GEOMETRIES} (the geometry of the initial k-means), got {init!r}"
        )


def kmeans_init(
    latent: np.ndarray,
    n_clusters: int,
    *,
    geometry: Geometry = "euclidean",
    n_init: int = 20,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means on the latent space: the initial cluster centres of the DEC phase.

    ``"euclidean"`` runs k-means on the latent codes (the authors' choice). ``"cosine"`` runs
    it on the codes scaled to unit length (spherical k-means), so cells group by the
    direction of their code and not its length.

    The centres live in the raw latent space, where the Student-t kernel of DEC measures
    distances: the k-means centres for ``"euclidean"``, the means of each cluster's raw codes
    for ``"cosine"``.

    Returns
    -------
    centres
        ``(n_clusters, n_latent)`` float32.
    labels
        k-means label of every cell.
    """
    from sklearn.cluster import KMeans

    check_geometry(geometry)
    latent = np.asarray(latent)
    kmeans = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=random_state)
    if geometry == "euclidean":
        kmeans.fit(latent)
        return np.asarray(kmeans.cluster_centers_, dtype=np.float32), kmeans.labels_
    norms = np.linalg.norm(latent, axis=1, keepdims=True)
    labels = kmeans.fit_predict(latent / np.clip(norms, 1e-12, None))
    centres = np.stack([latent[labels == c].mean(axis=0) for c in range(n_clusters)])
    return centres.astype(np.float32), labels
