"""Ranking from fingerprints: modules whose probe behaviour tracks the owner's target first."""

from __future__ import annotations

import numpy as np

from moma_client.preselect.ranking import (
    RANKERS,
    embedding_scores,
    fit_scores,
    probe_weights,
    rank_modules,
)


def _world(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Owner structures and probes in one latent space; the owner's target is a function of
    it; modules predict related functions, unrelated ones, or noise."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(3, 16))
    owner_latent = rng.normal(size=(300, 3))
    probe_latent = rng.normal(size=(192, 3))
    target = lambda z: np.sin(z[:, 0]) + 0.5 * z[:, 1]  # noqa: E731
    y = target(owner_latent)
    funcs, roles = [], []
    for n in range(60):
        if n < 10:
            funcs.append(lambda z, c=rng.uniform(0.5, 2): c * target(z) + 0.1 * z[:, 2])
            roles.append("related")
        elif n < 30:
            funcs.append(lambda z, i=n: np.cos(z[:, 2] * (1 + i % 3)))
            roles.append("unrelated")
        else:
            funcs.append(lambda z, r=np.random.default_rng(n): r.normal(size=len(z)))
            roles.append("noise")
    predictions = np.stack([f(probe_latent) for f in funcs]).astype(np.float32)
    owner = owner_latent @ basis + 0.05 * rng.normal(size=(300, 16))
    probes = probe_latent @ basis
    return owner, probes, predictions, y, roles


def test_probe_weights_are_row_stochastic_and_local() -> None:
    owner, probes, *_ = _world()
    a = probe_weights(owner, probes, k=8)
    assert a.shape == (300, 192)
    assert np.allclose(a.sum(axis=1), 1.0) and ((a > 0).sum(axis=1) == 8).all()
    # the heaviest probe of each owner structure is its most cosine-similar one
    c = probes - probes.mean(0)
    o = owner - probes.mean(0)
    sims = (o / np.linalg.norm(o, axis=1, keepdims=True)) @ (
        c / np.linalg.norm(c, axis=1, keepdims=True)).T
    assert (a.argmax(axis=1) == sims.argmax(axis=1)).mean() > 0.99


def test_related_modules_rank_first() -> None:
    owner, probes, predictions, y, roles = _world()
    a = probe_weights(owner, probes)
    embedding = np.zeros((len(roles), 192, 0), dtype=np.float16)
    ranking = rank_modules(a, predictions, embedding, y)
    top = [roles[i] for i in ranking.order[:10]]
    assert top == ["related"] * 10
    # noise carried through a few probes correlates by chance (few independent probes per
    # owner neighbourhood), but never as much as a related module
    related = ranking.r2[[i for i, r in enumerate(roles) if r == "related"]]
    noise = ranking.r2[[i for i, r in enumerate(roles) if r == "noise"]]
    assert related.min() > 0.5 > 0.3 > noise.max()


def test_refine_reorders_only_the_top_and_non_finite_rank_last() -> None:
    owner, probes, predictions, y, roles = _world(1)
    predictions[5, 3] = np.nan  # a related module with a broken fingerprint
    a = probe_weights(owner, probes)
    embedding = np.random.default_rng(0).normal(size=(len(roles), 192, 4)).astype(np.float16)
    ranking = rank_modules(a, predictions, embedding, y, refine=15)
    assert ranking.order[-1] == 5 and ranking.r2[5] == -1.0
    assert np.isfinite(ranking.proxy_mae[ranking.order[:15]]).all()
    assert np.isnan(ranking.proxy_mae[ranking.order[15:]]).all()
    assert sorted(ranking.order.tolist()) == list(range(len(roles)))


def test_fit_scores_match_squared_correlation() -> None:
    rng = np.random.default_rng(2)
    yhat = rng.normal(size=(50, 3))
    y = 2 * yhat[:, 0] + rng.normal(size=50)
    yhat[:, 2] = 1.0  # constant column
    r2 = fit_scores(yhat, y)
    assert np.isclose(r2[0], np.corrcoef(yhat[:, 0], y)[0, 1] ** 2)
    assert r2[2] == 0.0


def _geometry_world() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                               list[str]]:
    """The related modules of ``_world`` plus 'headless' ones: noise predictions, but an
    embedding that lays the probes out along the target (what AMC reads)."""
    owner, probes, predictions, y, roles = _world(3)
    rng = np.random.default_rng(4)
    latent = np.linalg.lstsq(owner, y, rcond=None)[0]  # the target direction in owner space
    along = probes @ latent
    embedding = rng.normal(size=(len(roles) + 8, 192, 4))
    for j in range(len(roles), len(roles) + 8):
        embedding[j, :, 0] = along * (1 + 0.1 * j)
    headless = rng.normal(size=(8, 192)).astype(np.float32)
    return (owner, probes, np.vstack([predictions, headless]), embedding.astype(np.float16),
            y, [*roles, *["headless"] * 8])


def test_every_ranker_orders_every_module_once() -> None:
    owner, probes, predictions, y, roles = _world(5)
    a = probe_weights(owner, probes)
    embedding = np.random.default_rng(1).normal(size=(len(roles), 192, 4)).astype(np.float16)
    predictions[7, 0] = np.inf
    for name, order in RANKERS.items():
        ranked = order(a, predictions, embedding, y)
        assert sorted(ranked.tolist()) == list(range(len(roles))), name
        assert roles[ranked[0]] == "related", name


def test_approx_amc_finds_modules_whose_geometry_fits_though_their_head_does_not() -> None:
    owner, probes, predictions, embedding, y, roles = _geometry_world()
    a = probe_weights(owner, probes)
    by_r2 = RANKERS["r2"](a, predictions, embedding, y)
    by_amc = RANKERS["approx-amc"](a, predictions, embedding, y)
    headless = {i for i, r in enumerate(roles) if r == "headless"}
    assert not headless & set(by_r2[:10].tolist())  # invisible to the prediction score
    top = [roles[i] for i in by_amc[:18]]
    assert top.count("headless") >= 4 and top.count("related") >= 6, top
    # the QP on approximate proxies may weigh a few others (a noise column carried through
    # the reference encoder's neighbourhoods is smooth), but useful modules dominate
    assert top.count("noise") + top.count("unrelated") <= 6, top


def test_embedding_scores_are_blocked_exactly_and_fit_a_linear_layout() -> None:
    owner, probes, _p, embedding, y, _roles = _geometry_world()
    a = probe_weights(owner, probes)
    whole = embedding_scores(a, embedding, y, block=10_000)
    assert np.allclose(embedding_scores(a, embedding, y, block=7), whole)
    assert whole[-8:].min() > 0.5 > whole[:-8].max()


def test_diverse_defers_near_duplicates() -> None:
    owner, probes, predictions, y, _roles = _world(6)
    a = probe_weights(owner, probes)
    twins = np.vstack([predictions, predictions[:10] * 1.0001 + 1e-4])  # 10 near-copies
    order = RANKERS["diverse"](a, twins, np.zeros((len(twins), 192, 0)), y)
    n = len(predictions)
    top = {int(j) % n if j >= n else int(j) for j in order[:10]}
    assert len(top) == 10  # never a module and its copy before every distinct one is in
    assert sorted(order.tolist()) == list(range(len(twins)))
