"""Ranking modules from fingerprints: pure numpy, no network, no model.

A fingerprint says what module j predicts on each public probe structure (``F[j, p]``). The
owner's structures are not probes, so each owner structure i is tied to its nearest probes in
one reference encoder's embedding space (the modules' shared base, run locally): weights
``A[i, p]`` over its ``k`` most cosine-similar probes, softmax with a temperature, as in AMC's
kNN. The module's *transferred* predictions on the owner's structures are ``Yhat = A F^T``
(m x N, one matrix product for all modules at once).

Score: how much of the owner's label variance a linear map of the transferred predictions
explains (``r^2`` of ``y ~ a + b yhat_j``), i.e. whether module j's output tracks the owner's
target over the owner's structures. Modules trained on related targets score high; modules
trained on noise (shuffled labels), constant or unrelated ones score near 0. This is cheap
(about m*P*N multiply-adds: 1,000 x 192 x 10,000 = 2 GFLOP) and needs no download.

The transferred embedding adds a second, geometric view for the modules near the top: the
leave-one-out kNN proxy of AMC itself on ``[yhat_j, A E_j]`` (a few dims), computed for the
best ``refine`` modules by the first score, and the final order is by that proxy's error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moma.amc.knn import loo_knn_predict

NEIGHBOUR_PROBES = 8
TEMPERATURE = 0.1


def probe_weights(owner: np.ndarray, probes: np.ndarray, *, k: int = NEIGHBOUR_PROBES,
                  temperature: float = TEMPERATURE) -> np.ndarray:
    """Row-stochastic ``A`` (m x P): each owner structure's ``k`` nearest probes (cosine)."""
    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        x = x - probes.mean(axis=0, keepdims=True)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    s = unit(owner) @ unit(probes).T
    k = min(k, s.shape[1])
    keep = np.argpartition(-s, k - 1, axis=1)[:, :k]
    a = np.zeros_like(s)
    rows = np.arange(s.shape[0])[:, None]
    logits = s[rows, keep] / temperature
    logits -= logits.max(axis=1, keepdims=True)
    w = np.exp(logits)
    a[rows, keep] = w / w.sum(axis=1, keepdims=True)
    return a


def fit_scores(yhat: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``r^2`` of the owner's labels on each column of ``yhat`` (0 for a constant column)."""
    y = np.asarray(y, dtype=np.float64)
    yc = y - y.mean()
    xc = yhat - yhat.mean(axis=0, keepdims=True)
    sxx = (xc ** 2).sum(axis=0)
    sxy = xc.T @ yc
    syy = float((yc ** 2).sum()) or 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(sxx > 1e-12 * max(1.0, float(sxx.max(initial=0.0))),
                      sxy ** 2 / (sxx * syy), 0.0)
    return np.nan_to_num(r2, nan=0.0)


@dataclass
class Ranking:
    """Modules (row indices of the fingerprint arrays) from best to worst, with both scores."""

    order: np.ndarray
    r2: np.ndarray
    proxy_mae: np.ndarray  # NaN outside the refined set


def rank_modules(a: np.ndarray, predictions: np.ndarray, embedding: np.ndarray,
                 y: np.ndarray, *, refine: int = 0, k: int = 5) -> Ranking:
    """Order all modules: by ``r^2`` of transferred predictions, the top ``refine`` re-ordered
    by AMC's leave-one-out kNN proxy on transferred predictions and embedding."""
    n = predictions.shape[0]
    finite = np.isfinite(predictions).all(axis=1)
    preds = np.where(finite[:, None], predictions, 0.0).astype(np.float64)
    yhat = a @ preds.T  # m x N
    r2 = fit_scores(yhat, y)
    r2[~finite] = -1.0
    first = np.argsort(-r2, kind="stable")
    proxy = np.full(n, np.nan)
    top = first[:min(refine, n)]
    for j in top:
        cols = [_standard(yhat[:, j])]
        emb = embedding[j].astype(np.float64)
        if emb.size and np.isfinite(emb).all():
            cols.append(a @ emb)
        feats = np.column_stack(cols)
        proxy[j] = float(np.mean(np.abs(loo_knn_predict(feats, y, k=k) - y)))
    refined = top[np.argsort(proxy[top], kind="stable")]
    order = np.concatenate([refined, first[len(top):]])
    return Ranking(order=order, r2=r2, proxy_mae=proxy)


def _standard(x: np.ndarray) -> np.ndarray:
    std = float(x.std())
    return (x - x.mean()) / std if std > 0 else x - x.mean()
