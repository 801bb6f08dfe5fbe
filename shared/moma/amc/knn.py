"""Leave-one-out kNN label propagation: how well a module's embedding space fits a new task.

For a downstream set of ``m`` structures with embeddings ``X`` (``m x d``, one module) and
labels ``y``, the proxy prediction of the MoMa reference code is

    S = normalize(X) normalize(X)^T                     (cosine similarity, m x m)
    A = exp(S / tau)                                    (tau = 0.2)
    A_ii = 0                                            (leave one out)
    keep the k largest entries of every row of A, zero the rest        (k = 5)
    A_ij <- A_ij / sum_l A_il                           (rows sum to one)
    yhat = A y

so ``yhat_i`` is a softmax-weighted mean of the labels of the ``k`` structures most similar to
``i`` (excluding ``i`` itself). A module whose embedding puts crystals with similar labels next
to each other gets a small proxy error ``mean |yhat - y|``.

Computation. ``exp`` is monotone, so the ``k`` largest ``A_ij`` are the ``k`` largest ``S_ij``
with ``j != i``, and within row ``i``

    A_ij / sum_l A_il = exp((S_ij - s_i) / tau) / sum_l exp((S_il - s_i) / tau)

for any shift ``s_i``; shifting by the row's largest kept similarity makes the result immune to
overflow for any ``tau > 0`` without changing it. Rows are processed in blocks of ``b``, so
memory is ``O(b m)`` instead of ``O(m^2)``; each row is computed independently, so the result does
not depend on ``b``.

Conventions: rows with zero norm normalize to the zero vector (as ``torch.nn.functional.
normalize`` does), so their similarity to everything is 0. Among equal similarities the lower
index is kept, so duplicate points give a deterministic answer. With ``m <= k`` every other
structure is a neighbour (``m - 1`` of them).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from moma.errors import DataError, MomaError

NORM_EPS = 1e-12  # as torch.nn.functional.normalize


def _as_float64(array: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(array, Tensor):
        return np.asarray(array.detach().cpu().double().numpy(), dtype=np.float64)
    return np.asarray(array, dtype=np.float64)


def _check_inputs(x: np.ndarray, y: np.ndarray, k: int, temperature: float,
                  block_size: int) -> None:
    if x.ndim != 2:
        raise DataError(f"embeddings must be a 2-D array (structures x features), got shape "
                        f"{x.shape}; stack one embedding per structure")
    m = x.shape[0]
    if y.shape != (m,):
        raise DataError(f"targets have shape {y.shape} but there are {m} embeddings; pass one "
                        "target per embedded structure")
    if m < 2:
        raise DataError(f"leave-one-out kNN needs at least 2 structures, got {m}; use a larger "
                        "training set")
    if not np.isfinite(x).all():
        raise DataError("embeddings contain NaN or inf; check the module (its weights or "
                        "BatchNorm statistics) and the input structures")
    if not np.isfinite(y).all():
        raise DataError("targets contain NaN or inf; remove those records")
    if k < 1:
        raise MomaError(f"k must be at least 1, got {k}")
    if not (temperature > 0 and np.isfinite(temperature)):
        raise MomaError(f"temperature must be a positive number, got {temperature}")
    if block_size < 1:
        raise MomaError(f"block_size must be at least 1, got {block_size}")


def _top_k_mask(s: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` largest entries of each row; ties go to the lower column index."""
    m = s.shape[1]
    kth = np.partition(s, m - k, axis=1)[:, m - k : m - k + 1]  # k-th largest value per row
    above = s > kth
    tied = s == kth
    room = k - above.sum(axis=1, keepdims=True)  # how many tied entries still fit (>= 1)
    return above | (tied & (np.cumsum(tied, axis=1) <= room))


def loo_knn_predict(embeddings: np.ndarray | Tensor, targets: np.ndarray, *, k: int = 5,
                    temperature: float = 0.2, block_size: int = 1024) -> np.ndarray:
    """Leave-one-out label-propagation prediction ``yhat = A y`` (see the module docstring).

    Args:
        embeddings: ``(m, d)`` per-structure embeddings of one module (array or tensor).
        targets: ``(m,)`` labels.
        k: neighbours kept per structure (``min(k, m - 1)`` are used).
        temperature: ``tau`` of ``exp(S / tau)``.
        block_size: rows computed at once; peak memory is a few ``block_size x m`` arrays.

    Returns:
        ``(m,)`` float64 predictions, each from the other structures only.
    """
    x = _as_float64(embeddings)
    y = _as_float64(targets)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    _check_inputs(x, y, k, temperature, block_size)
    m = x.shape[0]
    k_used = min(k, m - 1)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    xn = x / np.maximum(norms, NORM_EPS)
    out = np.empty(m, dtype=np.float64)
    for start in range(0, m, block_size):
        stop = min(start + block_size, m)
        rows = np.arange(start, stop)
        s = xn[start:stop] @ xn.T  # (b, m) cosine similarities
        s[rows - start, rows] = -np.inf  # leave one out: A_ii = 0 is never among the kept
        cols = np.nonzero(_top_k_mask(s, k_used))[1].reshape(stop - start, k_used)
        kept = np.take_along_axis(s, cols, axis=1)
        a = np.exp((kept - kept.max(axis=1, keepdims=True)) / temperature)
        out[start:stop] = (a * y[cols]).sum(axis=1) / a.sum(axis=1)
    return out


def proxy_mae(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute error ``mean_i |pred_i - y_i|`` of a proxy prediction (AMC's report)."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(y, dtype=np.float64).reshape(-1)
    if p.shape != t.shape or p.size == 0:
        raise DataError(f"predictions ({p.size}) and targets ({t.size}) must be non-empty and of "
                        "equal length")
    return float(np.mean(np.abs(p - t)))
