"""The crossed Laplace fit's actors (services/distributed/coupled_block.py, coupled_fit.py) with the modes predicted
from the last evaluation's and searched by chord steps (engine/solvers/crossed_modes.py, split across the blocks as
the factor is): the deviance and its gradient equal those of the search with a factor at every step (the path
before) to 1e-8, and the in-memory engine's; with fewer factorisations. The actors run in this process (no
cluster): each block a GeneralLaplace on its rows cut by the leading factor, as GeneralBlockActor builds it."""

from __future__ import annotations

import numpy as np
import pytest

from glmmlab.engine.model.terms import FactorBlock
from glmmlab.engine.solvers.crossed_modes import crossed_sparse
from glmmlab.engine.solvers.laplace import GeneralLaplace
from glmmlab.engine.solvers.structure import Structure
from glmmlab.services.distributed.coupled_block import CoupledRows
from glmmlab.services.distributed.coupled_fit import CoupledUnit
from tests.engine.test_crossed_sparse_gradient import crossed, laplace


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class _LocalActor:
    """An actor's coupled() in this process."""

    def __init__(self, lap: GeneralLaplace):
        self.rows = CoupledRows(lap)

    def coupled(self, method: str, *args):
        return _Done(getattr(self.rows, method)(*args))


def _blocks(st, lap: GeneralLaplace, n_blocks: int) -> tuple[list[GeneralLaplace], list[list[np.ndarray]]]:
    """The rows cut by the leading factor into ``n_blocks`` blocks of whole leading levels: each block's leading
    levels local (its rows sorted by them), the coupled factors' every global level."""
    lead = np.asarray(st.lead.codes)
    cut = np.array_split(np.arange(st.L1), n_blocks)
    laps, maps = [], []
    for levels in cut:
        rows = np.flatnonzero(np.isin(lead, levels))
        local = np.searchsorted(levels, lead[rows])
        rows = rows[np.argsort(local, kind="stable")]
        local = np.sort(local, kind="stable").astype(np.int32)
        blocks = [FactorBlock(st.lead.component, local, [st.lead.levels[i] for i in levels], st.lead.Z[rows],
                              st.lead.names, st.lead.groups)]
        blocks += [FactorBlock(b.component, np.asarray(b.codes, dtype=np.int64)[rows], b.levels, b.Z[rows],
                               b.names, b.groups) for b in st.rest]
        laps.append(GeneralLaplace(Structure(blocks), lap.Xs[rows], lap.y[rows], lap.pw[rows], lap.off[rows],
                                   lap.fam, lap.lk))
        maps.append([levels])
    return laps, maps


def _unit(st, lap, n_blocks: int, chords: bool) -> CoupledUnit:
    laps, maps = _blocks(st, lap, n_blocks)
    unit = CoupledUnit([_LocalActor(b) for b in laps], st, lap.fam, maps, in_flight=2)
    assert unit.chords  # a binomial logit model with crossed scalar terms held sparse
    unit.chords = chords
    return unit


def _path(b0: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Points as an optimiser visits them near its optimum (small steps in theta and beta), and a long step."""
    out = []
    for k, d in enumerate([0.0, 0.03, 0.01, 0.004, 0.001, 0.3, 0.0005]):
        out.append((np.array([0.8, 0.6]) * (1.0 + d), b0 + d * (-1.0) ** k))
    return out


@pytest.mark.parametrize("n_blocks", [1, 3])
def test_predicted_modes_and_chord_steps_equal_the_factor_at_every_step(n_blocks):
    st, lap, b0 = laplace("y ~ x + (1 | item) + (1 | subject)", crossed(), "binomial", "logit")
    assert crossed_sparse(st) and st.lead.component == "item"
    new, old = _unit(st, lap, n_blocks, True), _unit(st, lap, n_blocks, False)
    for theta, beta in _path(b0):
        a, b = new.parts(theta, beta, True), old.parts(theta, beta, True)
        m = lap.parts(theta, beta, True)  # the in-memory engine's (its own predicted modes and chord steps)
        D = {k: p["dev"] + p["uu"] + p["logdet"] for k, p in (("new", a), ("old", b), ("memory", m))}
        assert abs(D["new"] - D["old"]) <= 1e-8 * abs(D["old"])
        assert abs(D["new"] - D["memory"]) <= 1e-8 * abs(D["memory"])
        assert a["converged"] and b["converged"]
        for key in ("g_c", "g_0"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-6 * np.max(np.abs(b[key])))
            np.testing.assert_allclose(a[key], m[key], rtol=1e-6, atol=1e-6 * np.max(np.abs(m[key])))
    # the modes were predicted and searched by chord steps, with fewer factorisations of the coupled block
    assert new.counts["predicted"] >= 4 and new.counts["chord_steps"] > 0
    assert old.counts["predicted"] == old.counts["chord_steps"] == 0
    assert new.counts["factors"] < old.counts["factors"]
    theta, beta = _path(b0)[-1]
    fa, fb = new.final(theta, beta), old.final(theta, beta)
    np.testing.assert_allclose(fa["u"], fb["u"], rtol=0, atol=1e-7)
    for ca, cb in zip(fa["cond"], fb["cond"]):
        np.testing.assert_allclose(ca, cb, rtol=1e-7)
    np.testing.assert_allclose(fa["SEE"], fb["SEE"], rtol=1e-8)


def test_a_refused_prediction_starts_from_the_last_modes(monkeypatch):
    """A predicted step beyond MAX_PREDICTED_STEP (here every one) is refused: the search starts from the last
    modes, as GeneralLaplace does, and the deviance is the same."""
    from glmmlab.services.distributed import coupled_fit

    st, lap, b0 = laplace("y ~ x + (1 | item) + (1 | subject)", crossed(), "binomial", "logit")
    monkeypatch.setattr(coupled_fit, "MAX_PREDICTED_STEP", 0.0)
    new, old = _unit(st, lap, 2, True), _unit(st, lap, 2, False)
    for theta, beta in _path(b0)[:4]:
        a, b = new.parts(theta, beta, False), old.parts(theta, beta, False)
        assert abs((a["dev"] + a["uu"] + a["logdet"]) - (b["dev"] + b["uu"] + b["logdet"])) \
            <= 1e-8 * abs(b["dev"] + b["uu"] + b["logdet"])
    assert new.counts["predicted"] == 0 and new.counts["chord_steps"] > 0
