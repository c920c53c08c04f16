"""The time budget (workloads/budget.py): deadlines cover every wave, retries and the save; the grace period saves."""

from __future__ import annotations

import pytest

from workloads import budget as timing
from workloads.budget import Budget

HOUR = 3600


@pytest.mark.parametrize(
    ("max_runtime", "seeds", "parallelism", "waves"),
    [
        (2 * HOUR, 1, 1, 1),  # interactive
        (3 * HOUR, 8, 3, 3),  # the dev sweep: 3 + 3 + 2
        (3 * HOUR, 8, 8, 1),  # all at once
        (3 * HOUR, 8, 20, 1),  # parallelism above the seed count
        (30 * 60, 100, 7, 15),
        (7 * 24 * HOUR, 2, 1, 2),  # the longest maxRuntime config allows
        (60, 1, 1, 1),
    ],
)
def test_the_deadline_covers_every_wave_a_retry_and_the_grace_period(
    max_runtime: int, seeds: int, parallelism: int, waves: int
) -> None:
    budget = Budget.of(max_runtime, seeds, parallelism)
    assert budget.waves == waves
    # Each seed gets its whole maxRuntime of simulation, after the start-up allowance and before the save and upload.
    pod = timing.STARTUP_SECONDS + timing.FIRST_OBSERVATION_SECONDS + max_runtime
    pod += 2 * timing.FINISH_SECONDS + timing.SAVE_SECONDS + timing.MARGIN_SECONDS + timing.UPLOAD_SECONDS
    assert budget.pod_seconds == pod
    assert budget.deadline_seconds == (waves + timing.retry_slots(waves)) * pod + budget.grace_seconds
    assert budget.deadline_seconds > waves * (max_runtime + timing.STARTUP_SECONDS)
    assert budget.typical_seconds == waves * pod < budget.deadline_seconds


def test_long_sweeps_get_a_retry_slot_per_ten_waves() -> None:
    assert [timing.retry_slots(w) for w in (1, 9, 10, 11, 100, 101)] == [1, 1, 1, 2, 10, 11]
    sweep = Budget.of(HOUR, 1000, 10)  # 100 waves: room for 10 waves of pods run again
    assert sweep.deadline_seconds == 110 * sweep.pod_seconds + sweep.grace_seconds


def test_the_pod_covers_glue_at_real_time_and_the_sigterm_path_fits_the_spot_notice() -> None:
    budget = Budget.of(2 * HOUR, 1, 1)
    glue_longest = timing.FIRST_OBSERVATION_SECONDS + 2 * HOUR + 2 * timing.FINISH_SECONDS + timing.SAVE_SECONDS
    assert budget.glue_seconds == glue_longest and budget.pod_seconds > glue_longest + timing.STARTUP_SECONDS
    # After SIGTERM: glue saves, the uploader waits for its marker, stops shipping, writes index.json, in that order,
    # all inside the two minutes EC2 gives a spot instance, which is the grace period (tests/test_faults_run.py
    # measures the path with a thousand artifacts and a large checkpoint).
    assert timing.TERM_SAVE_SECONDS < budget.term_wait_seconds < timing.TERM_SHIP_SECONDS < timing.TERM_INDEX_SECONDS
    assert timing.TERM_INDEX_SECONDS < budget.grace_seconds == timing.SPOT_NOTICE_SECONDS == 120
    # The uploader calls glue gone well before the kubelet ends a wedged glue, and both long before any deadline.
    assert timing.HEARTBEAT_SECONDS < timing.HEARTBEAT_TIMEOUT_SECONDS < timing.GLUE_LIVENESS_SECONDS
    # The sidecars' startup window fits inside the start-up allowance.
    assert timing.SIDECAR_STARTUP_SECONDS < timing.STARTUP_SECONDS
