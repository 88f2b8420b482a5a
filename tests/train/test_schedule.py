"""Tests of voxvec.train.schedule: the one-cycle and cosine schedules and the margin ramp."""

from __future__ import annotations

import math

import pytest

from voxvec.train.schedule import LRSchedule, margin_at


def test_one_cycle_matches_the_original_linear_formula():
    s = LRSchedule("one_cycle", 1e-6, 5e-5, 3e-7, 0.15, 1000)
    warmup = 150
    assert s(0) == pytest.approx(1e-6)
    assert s(75) == pytest.approx(1e-6 + (5e-5 - 1e-6) * 75 / warmup)
    assert s(warmup) == pytest.approx(5e-5)
    # The original: lr = m * step + c with m = (end - max) / (total - warmup), c = end - total * m.
    m = (3e-7 - 5e-5) / (1000 - warmup)
    for step in (150, 400, 999, 1000):
        assert s(step) == pytest.approx(m * step + 3e-7 - 1000 * m)
    assert s(5000) == pytest.approx(3e-7)


def test_cosine_warms_up_linearly_then_decays_smoothly_to_end_lr():
    s = LRSchedule("cosine", 0.0, 1.0, 0.1, 0.1, 100)
    assert s(5) == pytest.approx(0.5)
    assert s(10) == pytest.approx(1.0)
    assert s(55) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s(100) == pytest.approx(0.1)
    values = [s(k) for k in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_no_warmup_starts_at_max_lr():
    assert LRSchedule("one_cycle", 1e-8, 1e-3, 1e-5, 0.0, 10)(0) == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("linear", 0, 1, 0, 0.1, 10), "unknown schedule"),
        (("cosine", 0, 1, 0, 1.0, 10), "warmup_pct"),
        (("cosine", 0, 1, 0, 0.1, 0), "total_steps"),
    ],
)
def test_bad_schedules_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        LRSchedule(*args)


def test_margin_ramps_linearly_then_holds():
    assert margin_at(0, 0.2, 0.2, 100) == 0.0
    assert margin_at(10, 0.2, 0.2, 100) == pytest.approx(0.1)
    assert margin_at(20, 0.2, 0.2, 100) == pytest.approx(0.2)
    assert margin_at(90, 0.2, 0.2, 100) == pytest.approx(0.2)
    assert margin_at(0, 0.3, 0.0, 100) == pytest.approx(0.3)
