"""Rows to points in a few dimensions: PCA (embscope.analysis.pca), or the non-linear maps t-SNE
(scikit-learn) and UMAP (umap-learn), optional extras imported only when asked for."""

from __future__ import annotations

import warnings

import numpy as np

from embscope.analysis.pca import Pca, pca
from embscope.errors import missing_extra

METHODS = ("pca", "tsne", "umap")
PERPLEXITY = 30.0  # t-SNE's usual perplexity; smaller sets get (n - 1) / 3
NEIGHBORS = 15  # UMAP's usual n_neighbors; smaller sets get n - 1


def project(x: np.ndarray, method: str = "pca", k: int = 2, *, solver: str = "auto",
            seed: int = 0) -> tuple[np.ndarray, Pca | None]:
    """(coordinates (n, k), the PCA when method is "pca") of the rows of x (n, d)."""
    if method == "pca":
        p = pca(x, k, solver=solver, seed=seed)
        return p.coords, p
    if method == "tsne":
        return tsne(x, k, seed), None
    return umap(x, k, seed), None


def tsne_perplexity(n: int) -> float:
    return min(PERPLEXITY, (n - 1) / 3)


def tsne(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """scikit-learn's t-SNE on cosine distances, initialised by PCA, seeded."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise missing_extra("scikit-learn", "tsne", "The t-SNE map (--method tsne)") from None
    model = TSNE(n_components=k, perplexity=tsne_perplexity(len(x)), metric="cosine", init="pca",
                 random_state=seed)
    with warnings.catch_warnings():  # scikit-learn's FutureWarnings are not the user's business
        warnings.simplefilter("ignore")
        return model.fit_transform(np.asarray(x, dtype=np.float32)).astype(np.float64)


def umap(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """umap-learn's UMAP on cosine distances, seeded."""
    try:
        import umap as umap_learn
    except ImportError:
        raise missing_extra("umap-learn", "umap", "The UMAP map (--method umap)") from None
    model = umap_learn.UMAP(n_components=k, n_neighbors=min(NEIGHBORS, len(x) - 1), metric="cosine",
                            random_state=seed)
    with warnings.catch_warnings():  # "n_jobs value 1 overridden to 1 by setting random_state": noise
        warnings.simplefilter("ignore")
        return np.asarray(model.fit_transform(np.asarray(x, dtype=np.float32)), dtype=np.float64)


def require_method(method: str) -> None:
    """Fail now, before any work, when the method's extra is not installed."""
    if method == "tsne":
        try:
            import sklearn.manifold  # noqa: F401
        except ImportError:
            raise missing_extra("scikit-learn", "tsne", "The t-SNE map (--method tsne)") from None
    elif method == "umap":
        try:
            import umap  # noqa: F401
        except ImportError:
            raise missing_extra("umap-learn", "umap", "The UMAP map (--method umap)") from None
