"""AMC weights: the cvxpy QP against projected gradient and against closed-form optima."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from moma.amc.weights import (
    WeightSolverError,
    mean_squared_error,
    project_to_simplex,
    projected_gradient_weights,
    residual_gram,
    solve_module_weights,
)
from moma.errors import DataError, MomaError


def random_problem(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Proxy predictions = labels + module bias + shared and own noise of varied size."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=m)
    shared = rng.normal(size=(m, 3)) @ (0.5 * rng.normal(size=(3, n)))
    own = rng.normal(size=(m, n)) * rng.uniform(0.3, 2.0, size=n)
    return y[:, None] + shared + own + 0.3 * rng.normal(size=n), y


def assert_on_simplex(w: np.ndarray) -> None:
    assert w.min() >= -1e-9
    assert abs(w.sum() - 1.0) <= 1e-9


@pytest.mark.parametrize("n", [3, 18, 40])
def test_qp_matches_projected_gradient(n: int) -> None:
    p, y = random_problem(n, 600, seed=n)
    sol = solve_module_weights(p, y)
    pg = projected_gradient_weights(p, y)
    assert_on_simplex(sol.weights)
    assert_on_simplex(pg)
    np.testing.assert_allclose(sol.weights, pg, rtol=0, atol=1e-6)
    assert sol.solver == "CLARABEL"
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(mean_squared_error(p, y, pg), rel=1e-9)
    # Both beat the uniform average and every single module.
    assert sol.objective <= mean_squared_error(p, y, np.full(n, 1.0 / n)) + 1e-12
    assert sol.objective <= min(np.mean((p - y[:, None]) ** 2, axis=0)) + 1e-12


def test_interior_optimum_closed_form() -> None:
    # Orthogonal residual columns with mean squares s_j^2: f(w) = sum_j w_j^2 s_j^2 on the
    # simplex, minimized by w_j = s_j^-2 / sum_k s_k^-2 (Lagrange), all strictly positive.
    rng = np.random.default_rng(7)
    m, s = 400, np.array([0.5, 1.0, 2.0, 0.8])
    q, _ = np.linalg.qr(rng.normal(size=(m, 4)))
    y = 3.0 + rng.normal(size=m)
    p = y[:, None] + np.sqrt(m) * q * s
    expected = s**-2 / np.sum(s**-2)
    sol = solve_module_weights(p, y)
    np.testing.assert_allclose(sol.weights, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(projected_gradient_weights(p, y), expected, rtol=0, atol=1e-9)
    assert sol.objective == pytest.approx(1.0 / np.sum(s**-2), rel=1e-9)


def test_vertex_optimum() -> None:
    # Module 0 has residual r; the others 2r plus a little independent noise. Any weight moved
    # off module 0 increases the error (E_0j = 2 E_00 > E_00), so w* = e_0.
    rng = np.random.default_rng(8)
    m = 500
    y = rng.normal(size=m)
    r = 0.2 * rng.normal(size=m)
    p = np.column_stack([y + r] + [y + 2 * r + 0.05 * rng.normal(size=m) for _ in range(5)])
    expected = np.eye(6)[0]
    sol = solve_module_weights(p, y)
    assert_on_simplex(sol.weights)
    np.testing.assert_allclose(sol.weights, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(projected_gradient_weights(p, y), expected, rtol=0, atol=1e-9)
    assert sol.objective == pytest.approx(np.mean(r**2), rel=1e-9)


def test_residual_gram_is_the_objective_and_offsets_do_not_matter() -> None:
    p, y = random_problem(18, 600, seed=3)
    e = residual_gram(p, y)
    rng = np.random.default_rng(0)
    for _ in range(5):
        w = rng.dirichlet(np.ones(18))
        assert w @ e @ w == pytest.approx(mean_squared_error(p, y, w), rel=1e-12)
    # Labels in the hundreds with errors of order one: the same weights.
    base = solve_module_weights(p, y).weights
    shifted = solve_module_weights(p + 1000.0, y + 1000.0).weights
    np.testing.assert_allclose(shifted, base, rtol=0, atol=1e-6)


@pytest.mark.parametrize("solver", ["OSQP", "SCS", "osqp"])
def test_other_solvers_agree(solver: str) -> None:
    if solver.upper() not in cp.installed_solvers():
        pytest.skip(f"{solver} not installed")
    p, y = random_problem(18, 600, seed=18)
    sol = solve_module_weights(p, y, solver=solver)
    assert sol.solver == solver.upper()
    assert_on_simplex(sol.weights)
    np.testing.assert_allclose(sol.weights, projected_gradient_weights(p, y), rtol=0, atol=1e-6)


def test_single_module() -> None:
    p, y = random_problem(1, 50, seed=1)
    sol = solve_module_weights(p, y)
    np.testing.assert_array_equal(sol.weights, [1.0])
    assert sol.objective == pytest.approx(np.mean((p[:, 0] - y) ** 2), rel=1e-12)
    np.testing.assert_array_equal(projected_gradient_weights(p, y), [1.0])


def test_unknown_solver_lists_installed() -> None:
    p, y = random_problem(3, 50, seed=2)
    with pytest.raises(MomaError, match=r"'NOPE' is not installed; choose one of .*CLARABEL"):
        solve_module_weights(p, y, solver="NOPE")


def test_solver_that_cannot_do_qp() -> None:
    if "SCIPY" not in cp.installed_solvers():
        pytest.skip("SCIPY solver not installed")
    p, y = random_problem(3, 50, seed=2)
    with pytest.raises(WeightSolverError, match="QP solver SCIPY failed"):
        solve_module_weights(p, y, solver="SCIPY")


def test_bad_input() -> None:
    p, y = random_problem(3, 50, seed=2)
    p[4, 1] = np.nan
    with pytest.raises(DataError, match="NaN or inf"):
        solve_module_weights(p, y)
    with pytest.raises(DataError, match="NaN or inf"):
        projected_gradient_weights(p, y)
    with pytest.raises(DataError, match=r"m = len\(y\) = 49"):
        solve_module_weights(p, y[:-1])


def test_simplex_projection_by_hand() -> None:
    # v = (0.3, 0.2, -1): rho = 2, theta = (0.3 + 0.2 - 1) / 2 = -0.25 -> (0.55, 0.45, 0).
    np.testing.assert_allclose(project_to_simplex(np.array([0.3, 0.2, -1.0])), [0.55, 0.45, 0.0],
                               rtol=0, atol=1e-15)
    np.testing.assert_allclose(project_to_simplex(np.array([2.0, 0.0])), [1.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(project_to_simplex(np.array([0.25, 0.75])), [0.25, 0.75],
                               atol=1e-15)


@pytest.mark.parametrize("n, m", [(40, 600), (300, 60)])
def test_residual_form_matches_gram_form(n: int, m: int) -> None:
    """The form used above RESIDUAL_FORM_ABOVE modules solves the same problem."""
    p, y = random_problem(n, m, seed=n + m)
    gram = solve_module_weights(p, y, form="gram")
    residual = solve_module_weights(p, y, form="residual")
    assert_on_simplex(residual.weights)
    assert residual.objective == pytest.approx(gram.objective, rel=1e-7)
    assert residual.objective <= mean_squared_error(p, y, projected_gradient_weights(p, y)) + 1e-9
    if n < m:  # a unique minimizer
        assert np.abs(residual.weights - gram.weights).max() <= 1e-5
    with pytest.raises(MomaError, match="unknown weight form"):
        solve_module_weights(p, y, form="dense")
