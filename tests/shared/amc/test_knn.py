"""Leave-one-out kNN label propagation against a dense m x m reference and a hand example."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moma.amc.knn import loo_knn_predict, proxy_mae
from moma.errors import DataError, MomaError


def dense_reference(x: np.ndarray, y: np.ndarray, k: int = 5, tau: float = 0.2) -> np.ndarray:
    """The definition written out on the full matrix: A = exp(S / tau), zero diagonal, top-k
    per row (ties to the lower index), rows normalized, yhat = A y."""
    m = len(x)
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    a = np.exp(xn @ xn.T / tau)
    np.fill_diagonal(a, 0.0)
    kk = min(k, m - 1)
    kept = np.zeros_like(a)
    for i in range(m):
        order = np.argsort(-a[i], kind="stable")[:kk]
        kept[i, order] = a[i, order]
    kept /= kept.sum(axis=1, keepdims=True)
    return kept @ y


@pytest.mark.parametrize("block_size", [1, 7, 64, 1024])
def test_blocks_equal_dense_reference(block_size: int) -> None:
    rng = np.random.default_rng(0)
    m, d = 203, 16  # 203 is divisible by none of the block sizes above except 1
    x = rng.normal(size=(m, d))
    x[10] = 0.0  # a zero-norm row: similarity 0 to everything
    x[50] = x[20]  # duplicates with different labels: ties resolved by the lower index
    x[51] = 3.0 * x[20]
    y = rng.normal(size=m)
    got = loo_knn_predict(x, y, block_size=block_size)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, dense_reference(x, y), rtol=0, atol=1e-12)


@pytest.mark.parametrize("m", [2, 3, 5, 6])
def test_k_at_least_m_uses_every_other_point(m: int) -> None:
    rng = np.random.default_rng(m)
    x = rng.normal(size=(m, 4))
    y = rng.normal(size=m)
    got = loo_knn_predict(x, y, k=5, block_size=2)
    np.testing.assert_allclose(got, dense_reference(x, y, k=5), rtol=0, atol=1e-12)
    if m == 2:
        np.testing.assert_allclose(got, y[::-1], rtol=0, atol=1e-15)


@pytest.mark.parametrize("tau", [0.05, 0.2, 1.0])
def test_temperature_and_k(tau: float) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 8))
    y = rng.normal(size=90)
    for k in (1, 3, 10):
        got = loo_knn_predict(x, y, k=k, temperature=tau, block_size=32)
        np.testing.assert_allclose(got, dense_reference(x, y, k=k, tau=tau), rtol=0, atol=1e-12)


def test_many_duplicates_and_tensor_input() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(size=(6, 5))
    x = base[rng.integers(0, 6, size=80)]  # 80 points on 6 distinct locations
    y = rng.normal(size=80)
    expected = dense_reference(x, y)
    np.testing.assert_allclose(loo_knn_predict(x, y, block_size=9), expected, rtol=0, atol=1e-12)
    got_t = loo_knn_predict(torch.from_numpy(x), y, block_size=9)
    np.testing.assert_allclose(got_t, expected, rtol=0, atol=1e-12)


def test_hand_example() -> None:
    # x0=(1,0), x1=(0,1), x2=(1,1), x3=(-1,0); k=2, tau=0.2, c = 1/sqrt(2).
    # Row 0: S = [., 0, c, -1] -> keeps 2 (c) and 1 (0).
    # Row 1: S = [0, ., c, 0] -> keeps 2 and the tie 0/3 goes to index 0.
    # Row 2: S = [c, c, ., -c] -> keeps 0 and 1 with equal weight.
    # Row 3: S = [-1, 0, -c, .] -> keeps 1 (0) and 2 (-c).
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    y = np.array([1.0, 2.0, 3.0, 4.0])
    e = math.exp(1 / math.sqrt(2) / 0.2)  # exp(c / tau)
    expected = [
        (3 * e + 2 * 1) / (e + 1),
        (3 * e + 1 * 1) / (e + 1),
        (1 + 2) / 2,
        (2 * 1 + 3 / e) / (1 + 1 / e),
    ]
    got = loo_knn_predict(x, y, k=2)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert proxy_mae(got, y) == pytest.approx(np.mean(np.abs(np.array(expected) - y)), abs=1e-15)


def test_proxy_mae_value() -> None:
    assert proxy_mae(np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 1.0])) == pytest.approx(3.5 / 3)
    with pytest.raises(DataError, match="equal length"):
        proxy_mae(np.zeros(3), np.zeros(2))


def test_errors() -> None:
    with pytest.raises(DataError, match="at least 2 structures"):
        loo_knn_predict(np.ones((1, 3)), np.ones(1))
    with pytest.raises(DataError, match="one target per"):
        loo_knn_predict(np.ones((4, 3)), np.ones(3))
    bad = np.ones((4, 3))
    bad[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN or inf"):
        loo_knn_predict(bad, np.ones(4))
    with pytest.raises(DataError, match="NaN or inf"):
        loo_knn_predict(np.ones((4, 3)), np.array([1.0, np.inf, 0.0, 0.0]))
    with pytest.raises(MomaError, match="k must be"):
        loo_knn_predict(np.ones((4, 3)), np.ones(4), k=0)
    with pytest.raises(MomaError, match="temperature"):
        loo_knn_predict(np.ones((4, 3)), np.ones(4), temperature=0.0)
