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


def transferred(a: np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Yhat = A F^T`` (m x N, non-finite modules zeroed) and which modules were finite."""
    finite = np.isfinite(predictions).all(axis=1)
    preds = np.where(finite[:, None], predictions, 0.0).astype(np.float64)
    return a @ preds.T, finite


def order_by_r2(a: np.ndarray, predictions: np.ndarray, embedding: np.ndarray,
                y: np.ndarray) -> np.ndarray:
    """The first ranker: ``r^2`` of the transferred predictions alone."""
    return rank_modules(a, predictions, embedding, y).order


def _by_r2(a: np.ndarray, predictions: np.ndarray, y: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Transferred predictions and the module rows by their ``r^2``, non-finite ones last."""
    yhat, finite = transferred(a, predictions)
    r2 = fit_scores(yhat, y)
    r2[~finite] = -1.0
    return yhat, np.argsort(-r2, kind="stable")


def order_diverse(a: np.ndarray, predictions: np.ndarray, embedding: np.ndarray,
                  y: np.ndarray, *, limit: float = 0.995, pool: int = 2000) -> np.ndarray:
    """``r^2`` order, but a module whose transferred predictions correlate above ``limit``
    with one already taken waits until every distinct one is in (near-duplicates last)."""
    yhat, first = _by_r2(a, predictions, y)
    head = first[:pool]
    z = yhat[:, head] - yhat[:, head].mean(axis=0, keepdims=True)
    z /= np.maximum(np.linalg.norm(z, axis=0, keepdims=True), 1e-12)
    taken: list[int] = []
    later: list[int] = []
    for c in range(len(head)):
        if taken and float(np.max(z[:, taken].T @ z[:, c])) > limit:
            later.append(c)
        else:
            taken.append(c)
    return np.concatenate([head[taken], head[later], first[pool:]]).astype(np.int64)


def order_forward(a: np.ndarray, predictions: np.ndarray, embedding: np.ndarray,
                  y: np.ndarray, *, pool: int = 2000, steps: int = 60) -> np.ndarray:
    """Greedy forward selection: each step takes the module whose transferred predictions
    best explain what the ones taken so far leave of ``y`` (least squares residual)."""
    yhat, first = _by_r2(a, predictions, y)
    head = first[:pool]
    x = yhat[:, head] - yhat[:, head].mean(axis=0, keepdims=True)
    x /= np.maximum(np.linalg.norm(x, axis=0, keepdims=True), 1e-12)
    resid = np.asarray(y, dtype=np.float64) - float(np.mean(y))
    taken: list[int] = []
    basis = np.zeros((len(y), 0))
    for _ in range(min(steps, len(head))):
        score = np.abs(x.T @ resid)
        if taken:
            score[taken] = -1.0
        c = int(np.argmax(score))
        taken.append(c)
        v = x[:, c] - basis @ (basis.T @ x[:, c])
        norm = float(np.linalg.norm(v))
        if norm > 1e-8:
            basis = np.column_stack([basis, v / norm])
            resid = resid - basis[:, -1] * float(basis[:, -1] @ resid)
    rest = [c for c in range(len(head)) if c not in set(taken)]
    return np.concatenate([head[taken], head[rest], first[pool:]]).astype(np.int64)


def approx_proxies(a: np.ndarray, yhat: np.ndarray, embedding: np.ndarray, y: np.ndarray,
                   cols: np.ndarray, k: int = 5) -> np.ndarray:
    """AMC's leave-one-out kNN proxy per module, on its transferred features
    ``[standardized yhat_j, A E_j]`` instead of its (undownloaded) embedding (m x len(cols))."""
    out = np.empty((len(y), len(cols)))
    for c, j in enumerate(cols):
        feats = [_standard(yhat[:, j])[:, None]]
        emb = embedding[j].astype(np.float64)
        if emb.size and np.isfinite(emb).all():
            feats.append(a @ emb)
        out[:, c] = loo_knn_predict(np.column_stack(feats), y, k=k)
    return out


def embedding_scores(a: np.ndarray, embedding: np.ndarray, y: np.ndarray, *,
                     block: int = 256) -> np.ndarray:
    """``r^2`` of ``y`` on a linear map of each module's transferred embedding ``A E_j``
    (m x d per module): how much of the target the module's geometry lays out linearly.
    One batched least-squares solve for all modules."""
    y = np.asarray(y, dtype=np.float64)
    yc = y - y.mean()
    out = np.zeros(len(embedding))
    for start in range(0, len(embedding), block):  # N x m x d in blocks: bounded memory
        emb = np.nan_to_num(embedding[start:start + block].astype(np.float64))
        x = np.einsum("mp,npd->nmd", a, emb)
        x -= x.mean(axis=1, keepdims=True)
        gram = np.einsum("nmd,nme->nde", x, x) + 1e-9 * np.eye(x.shape[2])
        xty = np.einsum("nmd,m->nd", x, yc)
        coef = np.linalg.solve(gram, xty[..., None])[..., 0]
        out[start:start + block] = np.einsum("nd,nd->n", coef, xty)
    return np.clip(out / max(float(yc @ yc), 1e-12), 0.0, 1.0)


def order_approx_amc(a: np.ndarray, predictions: np.ndarray, embedding: np.ndarray,
                     y: np.ndarray, *, pool: int = 400) -> np.ndarray:
    """AMC itself on approximate proxies, then the best linear fit.

    Each module scores the better of two linear fits of the owner's labels: on its
    transferred predictions (``r^2``) and on its transferred embedding (a module whose head is
    useless may still lay the owner's structures out well, and AMC reads only the layout).
    The ``pool`` best by that score get a proxy from their transferred features and the QP
    weighs them; the order is: modules with weight (heaviest first), then the score.
    """
    from moma.amc.weights import solve_module_weights

    yhat, finite = transferred(a, predictions)
    r2 = fit_scores(yhat, y)
    geo = embedding_scores(a, embedding, y)
    score = np.maximum(r2, np.where(np.isfinite(embedding).all(axis=(1, 2)), geo, 0.0))
    score[~finite] = -1.0
    first = np.argsort(-score, kind="stable")
    head = first[:pool]
    p = approx_proxies(a, yhat, embedding, y, head)
    w = solve_module_weights(p, np.asarray(y, dtype=np.float64)).weights
    heavy = head[np.argsort(-w, kind="stable")[:int(np.sum(w >= 1e-3))]]
    rest = first[~np.isin(first, heavy)]
    return np.concatenate([heavy, rest]).astype(np.int64)


DEFAULT_RANKER = "approx-amc"
RANKERS = {"r2": order_by_r2, "diverse": order_diverse, "forward": order_forward,
           "approx-amc": order_approx_amc}
"""Every ranker (``order(a, predictions, embedding, y)`` -> module rows, best first)."""
