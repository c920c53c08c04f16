"""simfleet's glue runtime: runs a user's `step(observation) -> action` between unitree-sim and Monty, and says how it ended.

    PYTHONPATH=/opt/simfleet python -m glue_runtime /glue/glue.py

A package of the standard library and pyzmq only (Python 3.11 or newer), shipped in the run's runtime ConfigMap and
mounted at /opt/simfleet/glue_runtime/ (the volume's `items` map each key to its path: keys cannot hold a `/`). In
this repository it is `workloads.glue_runtime`; every import inside it is relative, so it runs under either name.
A user's glue file defines only `step`; this runtime owns everything else, one concern per module:

    settings     the environment, read and checked once
    validator    the action schema's JSON Schema subset, and the action as the JSON the simulator receives
    bridge       the four ZeroMQ sockets, and the connection events that tell a sidecar went away
    liveness     the heartbeat file, each sidecar's incarnation and silence, the bound on each step() call
    host         the user's code: importing the glue file, calling step() under that bound
    checkpoints  saves by Monty (to a temporary file, checked, renamed), partial checkpoints, the resume record
    series       the decimated per-step time series /artifacts/metrics/steps.csv
    metrics      the seed's gauges, pushed to the Pushgateway from a background thread
    result       exit codes, the outcome, the summary and the done marker
    runtime      the entry, the signals and the control loop
    ends         how an attempt ends: the finish handshake, the saves, the outcome of each ending

What a run reports is the truth: `Succeeded` only when the episode (or its simulation time) ran to the end, both
sidecars acknowledged `finish`, neither restarted or went silent, every step() returned a valid action in time and
the checkpoint asked for was saved as a complete regular file. docs/failures.md maps every fault to its exit code,
status and reason.

Image contract for `unitree-sim` and `monty`
--------------------------------------------
All sockets are ZeroMQ over TCP on localhost; the sidecars bind, glue connects, every message is one frame of
UTF-8 JSON. Both sidecars get SIMFLEET_ARTIFACTS_DIR (/artifacts) and write their files under
/artifacts/<kind>/ with kind one of logs, videos, metrics (anything else is not uploaded).

Each sidecar picks an incarnation id when its process starts (any string, different at every start, e.g. 16 random
hex digits) and sends it as "incarnation" in every observation and every reply. A new incarnation mid-run means the
process restarted (the kubelet restarts native sidecars whatever the pod's restartPolicy) and lost its state: glue
ends the attempt. Glue also watches the TCP connections themselves, so a sidecar that sends no incarnation is still
caught when its process goes away.

unitree-sim
    PUB  SIMFLEET_OBS_ENDPOINT            one observation per control step (observation.schema.json) with its
                                          "incarnation"; simulation "time" never goes back within an episode; the
                                          last observation of an episode carries "done": true
    PULL SIMFLEET_ACTION_ENDPOINT         actions (action.schema.json)
    REP  SIMFLEET_SIM_CONTROL_ENDPOINT    {"command": "finish"} -> {"finished": true, "incarnation"} once its videos
                                          and logs are flushed and closed; it may stop publishing after that
monty
    REP  SIMFLEET_MONTY_ENDPOINT, every reply with its "incarnation":
         {"observation": {...}}              -> {"brain": {...}}   Monty's output for that step (any object)
         {"command": "save", "path": P}      -> {"saved": P}       once P is completely written (P is under
                                                                   /checkpoints; glue renames it afterwards)
         {"command": "finish"}               -> {"finished": true} once its logs and metrics are flushed; Monty
                                                                   must still answer a save after finish
    Monty loads SIMFLEET_CHECKPOINT_IN (/checkpoints/in.mstate) at start when it exists.
Requests are answered in order; glue's REQ sockets are relaxed and correlated, so an answer that comes after glue
gave up on it is dropped, never mistaken for the answer to a later request. The kubelet stops both sidecars
(SIGTERM) only after glue and artifact-uploader have exited.
"""
