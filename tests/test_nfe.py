"""debench.nfe: one NFE counter with one set of metric names, checked on a closed-form count."""

from __future__ import annotations

import pytest

from debench.nfe import METRICS, NFECounter, merge


def test_counter_attributes_evaluations_to_their_pass_and_resets():
    c = NFECounter()
    c.begin("forward")
    for _ in range(26):  # dopri5: 6 stages x 4 accepted steps + the 2-evaluation initial-step probe
        c.tick()
    c.begin("backward")
    c.tick(14)
    assert c.solve == 14 and c.total == 40
    assert c.pop(reset=False) == {"nfe_forward": 26, "nfe_backward": 14}
    assert c.pop() == {"nfe_forward": 26, "nfe_backward": 14} and c.pop() == dict.fromkeys(METRICS, 0)


def test_counters_of_several_solvers_merge_under_the_same_names():
    a, b = NFECounter(), NFECounter()
    a.tick(3)
    b.begin("backward")
    b.tick(5)
    assert merge([a.pop(), b.pop(), {}]) == {"nfe_forward": 3, "nfe_backward": 5}
    assert set(METRICS) == {"nfe_forward", "nfe_backward"}


def test_unknown_phase_is_an_error():
    with pytest.raises(ValueError, match="NFE phase must be one of"):
        NFECounter().begin("adjoint")
