"""The speed check itself: a step slow in every measurement fails, a one-off slow median does not."""
from __future__ import annotations

import time

import pytest


@pytest.fixture
def reference_seconds(speed_baseline, reference_step):
    """One reference step's duration, with a baseline key saying a step should take that long (1.0)."""
    if speed_baseline["update"]:
        pytest.skip("refreshing the baseline: nothing is checked")
    speed_baseline["stored"]["check/sleeping"] = 1.0
    yield reference_step()
    del speed_baseline["stored"]["check/sleeping"]


def test_a_step_slow_in_every_measurement_fails(reference_seconds, assert_speed):
    slow = 4 * reference_seconds            # 4× its baseline, twice the tolerance, in every measurement
    with pytest.raises(AssertionError, match="× its baseline"):
        assert_speed("check/sleeping", slow, workload=lambda: time.sleep(slow))


def test_a_transiently_slow_median_is_measured_again(reference_seconds, assert_speed):
    normalised = assert_speed("check/sleeping", 6 * reference_seconds,              # slow once …
                              workload=lambda: time.sleep(reference_seconds))     # … then at baseline
    assert normalised < 2.0
