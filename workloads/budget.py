"""How a run's time is spent, pure: per-pod allowances, the Job's deadline, the waits and liveness bounds of the pod, and
the grace period that fits a spot notice.

`maxRuntime` is the simulation time of ONE seed. Everything else a pod needs is added on top, so the last wave of
a sweep is never killed for time the platform spent (scale-up, image pulls, saves, retries):

    pod      = STARTUP + glue + MARGIN + UPLOAD
    glue     = FIRST_OBSERVATION + maxRuntime + 2 x FINISH + SAVE        (glue's longest life at real time)
    deadline = (waves + retry slots) x pod + grace                        (activeDeadlineSeconds)
    grace    = SPOT_NOTICE                                                (terminationGracePeriodSeconds)

waves is ceil(seeds to run / parallelism); retry slots = max(1, ceil(waves / 10)). They leave room for seeds to run
again after a spot reclaim, a node drain or their one `backoffLimitPerIndex` retry; with `checkpoint.every` a
replacement pod resumes from the latest partial checkpoint, so it usually needs far less. A suspended Job's deadline
clock starts when it is released (Kubernetes resets status.startTime on resume): time in Kueue's queue is not in it,
and a Job Kueue preempts and admits again gets its whole deadline again.

No wait inside the pod assumes that simulation seconds are wall seconds: the uploader follows glue's heartbeat (fresh
while glue's runtime is in control, however slow the simulator) and acts HEARTBEAT_TIMEOUT after it stops; only the
Job's deadline bounds a slow simulation. After SIGTERM everything fits the SPOT_NOTICE that EC2 gives a spot
instance: glue saves and finishes within TERM_SAVE, the uploader waits TERM_WAIT for glue's marker, stops uploading at
TERM_SHIP and has index.json written by TERM_INDEX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import naming

# Before glue's clock starts: a GPU node from zero (Cluster Autoscaler + EC2 boot + node join, ~5-10 min), the
# 20 GB simulator image pull (~5-10 min on a fresh node), the checkpoint fetch and the sidecars' startup probes.
STARTUP_SECONDS = 30 * 60
# The sidecars' startup probes allow this long (periodSeconds x failureThreshold), inside STARTUP_SECONDS.
SIDECAR_STARTUP_SECONDS = 15 * 60
SIDECAR_PROBE_PERIOD_SECONDS = 10
# Once started, a sidecar whose /healthz fails this long is restarted by the kubelet (liveness probe); glue then sees
# the restart and ends the attempt, naming it.
SIDECAR_LIVENESS_SECONDS = 60
# Glue starts once both sidecars passed their startup probes; the first observation must come soon after.
FIRST_OBSERVATION_SECONDS = 5 * 60
FINISH_SECONDS = 120  # each sidecar's `finish` acknowledgement (flush and close its files)
SAVE_SECONDS = 10 * 60  # the final brain save (and each periodic one); a large brain takes minutes
UPLOAD_SECONDS = 15 * 60  # the uploader after the done marker: artifacts, videos, checkpoint, index.json last
MARGIN_SECONDS = 60
# Liveness bounds inside the pod (each party's silence and step() come from the run's `timeouts`, config/runs.py).
HEARTBEAT_SECONDS = 1  # glue rewrites its heartbeat file this often
HEARTBEAT_TIMEOUT_SECONDS = 30  # the uploader calls glue gone after this long without a beat
GLUE_LIVENESS_SECONDS = 90  # the kubelet ends a glue whose heartbeat is this old (wedged beyond its own bounds)
PROGRESS_SECONDS = 60  # the uploader publishes progress.json this often while glue runs
# The SIGTERM path: EC2 gives a spot instance two minutes between its interruption notice and the reclaim
# (EC2 user guide, "Spot Instance interruption notices"); the kubelet's grace period is that, and nothing is longer.
SPOT_NOTICE_SECONDS = 120
TERM_SAVE_SECONDS = 40  # after SIGTERM: glue's partial save and finish requests
TERM_WAIT_SECONDS = TERM_SAVE_SECONDS + 5  # the uploader's wait for glue's marker after SIGTERM
TERM_SHIP_SECONDS = 95  # after SIGTERM, uploads stop here (the last partial checkpoint in S3 is the fallback)
TERM_INDEX_SECONDS = 115  # ... and index.json is written by here, retries included
# ... and the seed's Pushgateway group is deleted by here (no linger after SIGTERM), 2 s before the kubelet's SIGKILL;
# when index.json took until later the DELETE is skipped: the group stays until the seed's next pod pushes to it and
# deletes it.
TERM_METRICS_SECONDS = SPOT_NOTICE_SECONDS - 2
# Room for pods to run again (a spot reclaim, a drain, a retry): one wave, plus one per RETRY_WAVES_PER_SLOT waves,
# so a long sweep, with more pods to lose, gets more room.
RETRY_SLOTS = 1
RETRY_WAVES_PER_SLOT = 10


def retry_slots(waves: int) -> int:
    return max(RETRY_SLOTS, math.ceil(waves / RETRY_WAVES_PER_SLOT))


@dataclass(frozen=True)
class Waves:
    """What every Job's budget shares: pods run in waves of `parallelism`, the deadline covers them and retry slots."""

    run_seconds: int  # maxRuntime: one seed's simulation, or one shard's run
    waves: int

    @classmethod
    def of(cls, max_runtime: int, pods: int, parallelism: int) -> Self:
        return cls(max_runtime, math.ceil(pods / max(1, min(parallelism, pods))))

    @property
    def pod_seconds(self) -> int:
        raise NotImplementedError

    @property
    def grace_seconds(self) -> int:
        raise NotImplementedError

    @property
    def deadline_seconds(self) -> int:
        """activeDeadlineSeconds of the Job."""
        return (self.waves + retry_slots(self.waves)) * self.pod_seconds + self.grace_seconds

    @property
    def typical_seconds(self) -> int:
        """Wall time when nothing is retried (the deadline is its bound)."""
        return self.waves * self.pod_seconds


@dataclass(frozen=True)
class Budget(Waves):
    """A simulation run's pod: sidecars start, glue runs the seed, saves and finishes, the uploader ships."""

    @property
    def glue_seconds(self) -> int:
        """Glue's longest life at real time: the first observation, the simulation, both finish handshakes and the save.
        Only the Job's deadline holds glue to it; inside the pod the uploader follows glue's heartbeat instead."""
        return FIRST_OBSERVATION_SECONDS + self.run_seconds + 2 * FINISH_SECONDS + SAVE_SECONDS

    @property
    def pod_seconds(self) -> int:
        """One seed, from the pod's creation to its index.json."""
        return STARTUP_SECONDS + self.glue_seconds + MARGIN_SECONDS + UPLOAD_SECONDS

    @property
    def term_wait_seconds(self) -> int:
        """After SIGTERM the uploader waits this long for glue's marker (glue is saving a partial checkpoint)."""
        return TERM_WAIT_SECONDS

    @property
    def grace_seconds(self) -> int:
        """terminationGracePeriodSeconds: the spot notice. Glue saves, the uploader ships and writes index.json by
        TERM_INDEX_SECONDS; the kubelet's SIGKILL comes after, when EC2 reclaims a spot node in any case."""
        return SPOT_NOTICE_SECONDS


# A run's seed pushes its gauges to the Pushgateway (glue_runtime/metrics.py) this often: three pushes per scrape
# interval, so every scrape finds values at most a third of an interval old. Each push, and glue's wait for its final
# one before the done marker, is bounded by METRICS_PUSH_TIMEOUT_SECONDS: after SIGTERM that wait fits in the 5 s
# between TERM_SAVE and TERM_WAIT. The uploader then keeps the group METRICS_LINGER_SECONDS after glue's last push
# (what is left of it once index.json is written: the linger overlaps the uploads, within UPLOAD_SECONDS).
METRICS_PUSH_SECONDS = naming.PUSHGATEWAY_SCRAPE_INTERVAL_SECONDS // 3
METRICS_PUSH_TIMEOUT_SECONDS = 2

# Batch jobs (workloads/renderers/job.py): the user's program has no save protocol, so its allowances are simpler.
JOB_TERM_SECONDS = 60  # the program after SIGTERM (maxRuntime reached, drain, spot reclaim) before the kubelet kills it
# The uploader keeps a finished shard's Pushgateway group this long before deleting it, so the collector scrapes the
# final values once: its scrape interval plus one scrape's timeout (naming.pushgateway_linger_seconds). The GPU stays
# allocated meanwhile (the pod has not ended); a job is given the Pushgateway only where the collector scrapes it.
METRICS_LINGER_SECONDS = naming.pushgateway_linger_seconds()


@dataclass(frozen=True)
class JobBudget(Waves):
    """A batch job's allowances: `maxRuntime` is one shard's run time, enforced by the wrapper (job-entry.sh).

    pod      = STARTUP + maxRuntime + JOB_TERM + MARGIN + UPLOAD + METRICS_LINGER
    deadline = (waves + retry slots) x pod + grace                      (activeDeadlineSeconds)
    grace    = SPOT_NOTICE                                               (terminationGracePeriodSeconds)

    After SIGTERM the program gets JOB_TERM, the uploader waits for it a little longer and then writes index.json
    (no outputs: only a Succeeded attempt's go up), all within the spot notice.
    """

    @property
    def done_wait_seconds(self) -> int:
        """How long the uploader waits for the wrapper's done marker: the program's whole allowed life."""
        return self.run_seconds + JOB_TERM_SECONDS + MARGIN_SECONDS

    @property
    def term_wait_seconds(self) -> int:
        return JOB_TERM_SECONDS + 10

    @property
    def pod_seconds(self) -> int:
        return STARTUP_SECONDS + self.done_wait_seconds + UPLOAD_SECONDS + METRICS_LINGER_SECONDS

    @property
    def grace_seconds(self) -> int:
        return SPOT_NOTICE_SECONDS
