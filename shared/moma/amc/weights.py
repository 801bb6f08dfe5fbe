"""AMC module weights: the convex combination of proxy predictions closest to the labels.

With ``P = [yhat_1 ... yhat_N]`` (``m x N``, one leave-one-out proxy prediction per module) the
weights are

    w* = argmin_w (1/m) ||P w - y||^2    subject to  w >= 0,  1^T w = 1.

Gram form. Expanding the square gives ``w^T (P^T P / m) w - 2 (P^T y / m)^T w + y^T y / m``:
an ``N x N`` quadratic program whose size does not grow with ``m`` (measured with m = 1000:
3 ms for N = 18 and 8 ms for N = 100, where handing cvxpy the ``m``-row least-squares form took
19 ms and 0.32 s). On the simplex ``1^T w = 1``, so
``P w - y = (P - y 1^T) w = R w`` with the residual matrix ``R_ij = yhat_j(i) - y_i``, and the
objective is exactly

    f(w) = w^T E w,     E = R^T R / m,

the same function on the feasible set, with no constant and no cancellation between
``P^T P`` and ``P^T y`` when the labels are large compared with the proxy errors (targets of
hundreds of meV/atom with errors of tens): measured on one N = 18 problem with labels and
predictions offset by 1000, the expanded form moved Clarabel's weights by 1e-4 (by 0.15 at an
offset of 1e5), this form by 4e-15 (4e-13). ``E`` is scaled by its mean diagonal before
solving (the minimizer does not change) so the solver's absolute tolerances mean the same thing
for every unit.

:func:`projected_gradient_weights` solves the same problem by an independent route (FISTA on the
same objective with the exact Euclidean projection onto the simplex) and serves as a cross-check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np

from moma.errors import DataError, ExitCode, MomaError

DEFAULT_SOLVER = "CLARABEL"

# Tolerances per solver (cvxpy 1.9 option names), chosen by measurement against the projected-
# gradient solution on random well-conditioned problems with m = 1000: Clarabel's defaults (1e-8)
# were off by up to 5.5e-6 in the weights at N = 100 (1.4e-7 at N = 18); with these, 1.6e-9, at
# the same speed (about 4 ms for N = 18, 9 ms for N = 100). OSQP (polishing on) and SCS reached
# 1e-10 with the values below.
SOLVER_OPTIONS: dict[str, dict[str, Any]] = {
    "CLARABEL": {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10,
                 "tol_ktratio": 1e-8, "max_iter": 500},
    "OSQP": {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iter": 200000},  # cvxpy turns polishing on
    "SCS": {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 200000},
}

ACCEPTED_STATUSES = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)

RESIDUAL_FORM_ABOVE = 2000
"""Above this many modules (and more modules than structures) the weights are solved in the
residual form ``||R w||^2`` (``m`` rows) instead of the ``N x N`` Gram form: the same objective
on the simplex, but the Gram matrix grows as ``N^2`` (measured: 24 s for N = 2,000 with m = 200;
at N = 10,000 it would hold 10^8 entries, 0.8 GB, and a dense factorization of that size),
while ``R`` is only ``m x N``."""


class WeightSolverError(MomaError):
    """The quadratic program for the module weights did not produce a solution."""

    exit_code = ExitCode.INTERNAL


@dataclass
class WeightSolution:
    """Solved module weights.

    ``objective`` is ``(1/m) ||P w - y||^2`` evaluated at the returned ``weights`` (after
    clipping), ``seconds`` the wall time of building and solving the program.
    """

    weights: np.ndarray
    objective: float
    solver: str
    seconds: float
    status: str


def _check_problem(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pa = np.asarray(p, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64).reshape(-1)
    if pa.ndim != 2 or pa.shape[0] != ya.shape[0] or pa.shape[0] == 0 or pa.shape[1] == 0:
        raise DataError(f"P must be (m structures x N modules) with m = len(y) = {ya.shape[0]}, "
                        f"got shape {pa.shape}; stack one proxy prediction column per module")
    if not (np.isfinite(pa).all() and np.isfinite(ya).all()):
        raise DataError("proxy predictions or targets contain NaN or inf; check the module "
                        "embeddings and remove records with non-finite targets")
    return pa, ya


def mean_squared_error(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """``(1/m) ||P w - y||^2``."""
    r = p @ w - y
    return float(r @ r / len(y))


def residual_gram(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``E = R^T R / m`` with ``R = P - y 1^T``, symmetrized; ``w^T E w`` is the objective."""
    r = p - y[:, None]
    e = r.T @ r / len(y)
    return (e + e.T) / 2


def _resolve_solver(solver: str) -> str:
    installed = cp.installed_solvers()
    name = solver.upper()
    if name not in installed:
        raise MomaError(f"QP solver {solver!r} is not installed; choose one of "
                        f"{', '.join(installed)}")
    return name


def solve_module_weights(p: np.ndarray, y: np.ndarray, *,
                         solver: str = DEFAULT_SOLVER, form: str = "auto") -> WeightSolution:
    """Module weights ``w*`` (see the module docstring) with cvxpy on the ``N x N`` Gram form.

    Args:
        p: ``(m, N)`` proxy predictions, one column per module.
        y: ``(m,)`` labels.
        solver: an installed cvxpy solver (``CLARABEL`` by default; ``OSQP``, ``SCS``, ...).
        form: ``gram`` (``w^T E w``, ``N x N``), ``residual`` (``||R w||^2``, ``m`` rows) or
            ``auto``: the Gram form unless ``N`` exceeds both ``RESIDUAL_FORM_ABOVE`` and ``m``.

    Negative entries left by the solver's tolerance are clipped to 0 and the weights
    renormalized to sum to one.
    """
    name = _resolve_solver(solver)
    pa, ya = _check_problem(p, y)
    n = pa.shape[1]
    start = time.perf_counter()
    if n == 1:
        w1 = np.ones(1)
        return WeightSolution(w1, mean_squared_error(pa, ya, w1), "none",
                              time.perf_counter() - start, "trivial")
    w = cp.Variable(n)
    if form == "auto":
        form = "residual" if n > RESIDUAL_FORM_ABOVE and n > pa.shape[0] else "gram"
    if form == "gram":
        e = residual_gram(pa, ya)
        scale = float(np.trace(e)) / n
        if scale > 0:
            e = e / scale
        objective = cp.quad_form(w, cp.psd_wrap(e))
    elif form == "residual":
        r = pa - ya[:, None]
        norm = float(np.sqrt((r * r).sum() / n))  # the same scaling as the Gram form's
        objective = cp.sum_squares((r / norm if norm > 0 else r) @ w)
    else:
        raise MomaError(f"unknown weight form {form!r}: use auto, gram or residual")
    problem = cp.Problem(cp.Minimize(objective), [w >= 0, cp.sum(w) == 1])
    try:
        problem.solve(solver=name, **SOLVER_OPTIONS.get(name, {}))
    except cp.SolverError as exc:
        raise WeightSolverError(f"QP solver {name} failed on the module weights ({exc}); "
                                "choose another solver, e.g. OSQP") from exc
    seconds = time.perf_counter() - start
    value = w.value
    if problem.status not in ACCEPTED_STATUSES or value is None or not np.isfinite(value).all():
        raise WeightSolverError(f"QP solver {name} returned status {problem.status!r} for the "
                                "module weights; choose another solver, e.g. OSQP")
    weights = np.clip(np.asarray(value, dtype=np.float64), 0.0, None)
    total = weights.sum()
    if not total > 0:
        raise WeightSolverError(f"QP solver {name} returned all-zero module weights; try "
                                "another solver, e.g. OSQP")
    weights /= total
    return WeightSolution(weights, mean_squared_error(pa, ya, weights), name, seconds,
                          str(problem.status))


def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto ``{w >= 0, sum w = 1}`` (sort-based, exact).

    With ``u`` sorted decreasingly and ``rho = max{j : u_j - (sum_{i<=j} u_i - 1) / j > 0}``,
    the projection is ``max(v - theta, 0)`` for ``theta = (sum_{i<=rho} u_i - 1) / rho``.
    """
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    j = np.arange(1, len(v) + 1)
    rho = int(np.nonzero(u - css / j > 0)[0][-1]) + 1
    theta = css[rho - 1] / rho
    return np.maximum(v - theta, 0.0)


def projected_gradient_weights(p: np.ndarray, y: np.ndarray, *, max_iter: int = 100000,
                               tol: float = 1e-13) -> np.ndarray:
    """``w*`` by accelerated projected gradient (FISTA with adaptive restart), no cvxpy.

    Minimizes ``f(w) = w^T E w`` (the residual Gram form of the module docstring; the expanded
    form ``w^T P^T P w / m - 2 y^T P w / m`` loses digits to cancellation when the labels are
    large: with labels offset by 1000 it moved the weights by 7e-3) with gradient ``2 E w`` and
    Lipschitz constant ``L = 2 lambda_max(E)``:

        x_{k+1} = proj(z_k - grad(z_k) / L)
        t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2
        z_{k+1} = x_{k+1} + ((t_k - 1) / t_{k+1}) (x_{k+1} - x_k)

    restarting the momentum (``t = 1``) whenever the objective increases. Stops when a step
    moves no coordinate by more than ``tol``.
    """
    pa, ya = _check_problem(p, y)
    n = pa.shape[1]
    if n == 1:
        return np.ones(1)
    e = residual_gram(pa, ya)
    lipschitz = 2.0 * float(np.linalg.eigvalsh(e)[-1])
    if lipschitz <= 0:
        return np.full(n, 1.0 / n)  # P w = y for every w: each point of the simplex is optimal

    def objective(v: np.ndarray) -> float:
        return float(v @ e @ v)

    x = np.full(n, 1.0 / n)
    z = x.copy()
    t = 1.0
    f_x = objective(x)
    for _ in range(max_iter):
        x_next = project_to_simplex(z - 2.0 * (e @ z) / lipschitz)
        f_next = objective(x_next)
        if f_next > f_x:  # adaptive restart: drop the momentum and take a plain step from x
            t = 1.0
            x_next = project_to_simplex(x - 2.0 * (e @ x) / lipschitz)
            f_next = objective(x_next)
        step = float(np.max(np.abs(x_next - x)))
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        z = x_next + ((t - 1.0) / t_next) * (x_next - x)
        x, f_x, t = x_next, f_next, t_next
        if step <= tol:
            break
    return x
