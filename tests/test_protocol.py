"""Every system implements the whole System protocol itself: the solvers never ask which variant they run."""

import numpy as np
import pytest

from attnflow.solvers.multihead import MultiHeadSystem
from attnflow.solvers.noisy import NoisySystem
from attnflow.solvers.protocol import System, members
from attnflow.solvers.separate import SeparateSystem
from attnflow.solvers.system import ScoreSystem
from attnflow.solvers.training_set import TrainingSetSystem

SCORES = ScoreSystem(np.eye(3), np.eye(3), np.full(3, 1 / 3))
SYSTEMS = {
    "scores": SCORES,
    "separate": SeparateSystem(SCORES, 2),
    "noisy": NoisySystem(np.eye(3), np.full(3, 1 / 3), 1.0, 0.1),
    "heads": MultiHeadSystem(SCORES, 2),
    "training set": TrainingSetSystem(SCORES, [0, 2, 2], np.log(np.full((3, 3), 1 / 3)),
                                      np.random.default_rng(1).standard_normal((3, 3))),
}


def test_the_protocol_names_the_flat_interface_and_the_callbacks():
    assert {"K", "state_is_scores", "flatten", "flat_rhs", "flat_jacobian", "flat_event_values", "flat_loss",
            "flat_losses", "flat_attention", "scores_of", "callbacks", "gd_callback", "stable_step",
            "warm_up"} == set(members())


@pytest.mark.parametrize("name", SYSTEMS)
def test_each_system_defines_every_member_itself(name):
    system = SYSTEMS[name]
    assert isinstance(system, System)
    cls = type(system)
    missing = [m for m in members() if not any(m in vars(c) for c in cls.__mro__ if c not in (object, System))]
    assert not missing, f"{cls.__name__} does not define {missing}"
    y = system.flatten(_start(name))
    step, args, work = system.gd_callback()
    dy, S = np.empty_like(y), np.empty((3, 3))
    value, gap = step(y, *args, dy, S, np.full(work, np.nan))         # the step writes its scratch first
    np.testing.assert_allclose(dy, system.flat_rhs(y), rtol=0, atol=1e-12)
    assert np.allclose((gap, np.log(value)), system.flat_event_values(y), rtol=1e-12, atol=0)
    np.testing.assert_allclose(S, system.scores_of(y)[0], rtol=0, atol=1e-12)
    assert system.callbacks() is not None                  # every system runs the compiled integrators
    rhs, events, args, event_args, jac = system.callbacks()
    np.testing.assert_allclose(rhs(y, *args), system.flat_rhs(y), rtol=0, atol=1e-12)   # the noisy model: NumPy vs compiled sums
    assert np.allclose(events(y, *event_args), system.flat_event_values(y), rtol=1e-12, atol=0)
    np.testing.assert_allclose(jac(y, *args), system.flat_jacobian(y), rtol=0, atol=1e-12)
    assert system.flat_losses(np.stack([y, y]))[1] == system.flat_loss(y)


def _start(name):
    rng = np.random.default_rng(0)
    if name == "separate":
        return rng.standard_normal((2, 2, 3)) * 0.5
    if name == "heads":
        return rng.standard_normal((2, 3, 3))
    return rng.standard_normal((3, 3)) * 0.5          # the scores, or the noisy model's Q
