#!/bin/bash
# output-uploader, a main container of a batch job pod beside the work container, which runs the user's command
# under job-entry.sh (AWS CLI v2 image: bash, coreutils, jq, findutils, aws; no curl, no python). It starts with
# the pod and exits by itself. With P = <SIMFLEET_PREFIX>shard-<shard>/ in the artifacts bucket:
#
# 1. Records this attempt at <P>attempts/<attempt>.json (<attempt> = <utc>-<hostname>); the number of markers minus one
#    is the number of recoveries. If that fails (after retries), it carries on, with recoveries null and the failure
#    at the end of index.json's reason (the status stays the work container's), as fetch.sh does: without index.json
#    simfleet never learns that the shard ended, and its outputs would be lost too.
# 2. Opens the result channel: the FIFO SIMFLEET_RESULT_FIFO in the marker directory, which only this container may
#    write (the work container mounts it read-only). job-entry.sh opens it, says "started", and this unlinks it at
#    once, so the program cannot reach it by name; then the wrapper's one-line result comes, and the end of the
#    channel when the wrapper's descriptor closes. A wrapper that dies without a result (its container killed, out
#    of memory) ends the channel just the same: this knows at once. It waits SIMFLEET_START_WAIT_SECONDS for the
#    wrapper to connect and at most SIMFLEET_DONE_WAIT_SECONDS in all; on SIGTERM (to its guardian, PID 1: term.sh
#    guard_term) it stops waiting and gives the work container SIMFLEET_TERM_WAIT_SECONDS to end.
# 3. When the work container Succeeded: uploads every regular file under SIMFLEET_OUTPUTS_DIR (recursively, dotfiles
#    too; symlinks, FIFOs and anything that resolves elsewhere refused) to <P>outputs/<attempt>/<relative path>, many
#    files per aws process, each sent again when it changed meanwhile, then tags them $SIMFLEET_KIND_TAG=outputs
#    (a SIGTERM stops the tagging at once: index.json first, then the outputs with no tag yet, until the pod ends).
#    Each attempt writes under its own prefix, so a failed attempt's files never mix with the one that succeeded; a
#    failed upload is collected, not fatal. Other outcomes upload no outputs.
# 4. Writes <P>index.json LAST (retried beyond the CLI's own retries); its presence tells simfleet that this shard has
#    ended, and it names the attempt whose outputs count (docs/records.md describes every field):
#      {job, specHash, shard, status, reason, exitCode, startTime, completionTime, attempt, outputsPrefix,
#       outputFiles, outputs, recoveries, untaggedOutputs}
#    status is the wrapper's (Succeeded | Failed | Interrupted); Interrupted after a SIGTERM before the result;
#    Failed when the wrapper ended without a result, never connected, or sent something else; Failed with reason
#    "upload failed: ..." when any upload failed or something in the outputs is not a regular file; Incomplete when
#    an output kept changing after its last upload. outputs is the number of files uploaded, outputFiles their paths
#    relative to outputsPrefix (s3://<artifacts>/<P>outputs/<attempt>/).
# 5. With SIMFLEET_PUSHGATEWAY_URL and SIMFLEET_METRICS_GROUP, after index.json: waits
#    SIMFLEET_METRICS_LINGER_SECONDS (not after SIGTERM) so Prometheus scrapes the final values, then deletes the
#    shard's group (common.sh pushgateway_delete: DELETE <url>/metrics/<group> over bash's /dev/tcp, plain http://
#    only, the whole exchange bounded by 10 s). A failure there is a warning; it changes neither index.json nor the
#    exit code. This runs after the attempt to write index.json even when that failed: stale metrics help nobody.
#
# Env: SIMFLEET_JOB, SIMFLEET_SPEC_HASH, SIMFLEET_PREFIX (jobs/<job>/<hash>/), JOB_COMPLETION_INDEX (a whole
# number), SIMFLEET_ARTIFACTS_BUCKET (these five required), SIMFLEET_SHARD_LIST (set on a Job for some shards only:
# the shard is the word at position JOB_COMPLETION_INDEX), SIMFLEET_OUTPUTS_DIR (/outputs), SIMFLEET_RESULT_FIFO
# (/simfleet/result), SIMFLEET_START_WAIT_SECONDS (1800), SIMFLEET_DONE_WAIT_SECONDS (604800), SIMFLEET_POLL_SECONDS
# (1, may be fractional: how often the channel is looked at),
# SIMFLEET_TERM_WAIT_SECONDS (60), SIMFLEET_INDEX_RETRY_SECONDS (120), SIMFLEET_KIND_TAG (simfleet-kind),
# SIMFLEET_TAG_PARALLEL (4), SIMFLEET_PUSHGATEWAY_URL, SIMFLEET_METRICS_GROUP (default job/<job>/shard/<shard>),
# SIMFLEET_METRICS_LINGER_SECONDS (30), AWS_REGION.
# Exit: 0 only when index.json says Succeeded; 1 otherwise, or when index.json could not be written; 2 at once,
# before anything else, when the settings above are malformed (no shard to write an index.json for).
#
# Not `set -e`: one failed upload must not stop the others, and index.json must be written whatever else
# happened. Every command whose failure matters is checked where it runs.
set -uo pipefail
NAME=output-uploader
# shellcheck source=common.sh
source "${BASH_SOURCE[0]%/*}/common.sh" # (no $(...) before guard_term: see common.sh's first lines)

# From the first moment: a SIGTERM while the attempt is recorded still ends the wait below at once. The guardian
# (term.sh guard_term) holds the trap; this runs as its worker, where term_poll sets terminated=1 and term_at, and
# then calls on_term.
on_term() {
  # While the outputs are tagged before index.json: stop there (await's deadline, now), the index comes first.
  [ "${tagging:-0}" = 0 ] || HARD_DEADLINE=$term_at
}
guard_term notify "$@"

OUTPUTS_DIR=${SIMFLEET_OUTPUTS_DIR:-/outputs}
FIFO=${SIMFLEET_RESULT_FIFO:-/simfleet/result}
START_WAIT=${SIMFLEET_START_WAIT_SECONDS:-1800}
POLL=${SIMFLEET_POLL_SECONDS:-1}
DONE_WAIT=${SIMFLEET_DONE_WAIT_SECONDS:-604800}
TERM_WAIT=${SIMFLEET_TERM_WAIT_SECONDS:-60}
INDEX_RETRY=${SIMFLEET_INDEX_RETRY_SECONDS:-120}
TAG_PARALLEL=${SIMFLEET_TAG_PARALLEL:-4}
KIND_TAG=${SIMFLEET_KIND_TAG:-simfleet-kind}
PUSHGATEWAY_URL=${SIMFLEET_PUSHGATEWAY_URL:-}
METRICS_GROUP=${SIMFLEET_METRICS_GROUP:-}
LINGER=${SIMFLEET_METRICS_LINGER_SECONDS:-30}
require_whole_seconds SIMFLEET_START_WAIT_SECONDS "$START_WAIT" SIMFLEET_DONE_WAIT_SECONDS "$DONE_WAIT" \
  SIMFLEET_TERM_WAIT_SECONDS "$TERM_WAIT" SIMFLEET_INDEX_RETRY_SECONDS "$INDEX_RETRY" \
  SIMFLEET_TAG_PARALLEL "$TAG_PARALLEL" SIMFLEET_METRICS_LINGER_SECONDS "$LINGER" &&
  require_seconds SIMFLEET_POLL_SECONDS "$POLL" || exit 2
OUTPUTS_DIR=${OUTPUTS_DIR%/}
for variable in SIMFLEET_JOB SIMFLEET_SPEC_HASH SIMFLEET_PREFIX SIMFLEET_ARTIFACTS_BUCKET; do
  if [ -z "${!variable:-}" ]; then
    warn "$variable is not set"
    exit 2
  fi
done
SHARD=${JOB_COMPLETION_INDEX:-}
if ! [[ $SHARD =~ ^[0-9]+$ ]]; then
  warn "JOB_COMPLETION_INDEX must be the shard's index (a whole number), not '$SHARD'"
  exit 2
fi
SHARD=$((10#$SHARD)) # "03" is shard 3, and a JSON number
if [ -n "${SIMFLEET_SHARD_LIST:-}" ]; then
  # A Job for the shards left after a lost state: the completion index is a position in this list.
  read -r -a shards <<<"$SIMFLEET_SHARD_LIST"
  if [ "$SHARD" -ge "${#shards[@]}" ] || ! [[ ${shards[$SHARD]} =~ ^[0-9]+$ ]]; then
    warn "no shard at position $SHARD of SIMFLEET_SHARD_LIST '$SIMFLEET_SHARD_LIST'"
    exit 2
  fi
  SHARD=$((10#${shards[$SHARD]}))
fi
if [ -n "$PUSHGATEWAY_URL" ] && [ -z "$METRICS_GROUP" ]; then
  METRICS_GROUP="job/$SIMFLEET_JOB/shard/$SHARD" # the group job-entry.sh gives the program
fi
P="${SIMFLEET_PREFIX}shard-${SHARD}/"
WORK=$(mktemp -d)
reader=""
cleanup() {
  [ -z "$reader" ] || kill "$reader" 2>/dev/null
  [ ! -p "$FIFO" ] || rm -f "$FIFO" # a wrapper that never connected must not find it later
  rm -rf "$WORK"
}
trap cleanup EXIT
ERR="$WORK/err"

# 2a. The result channel first: the wrapper waits for it before it runs anything.
rm -f "$FIFO"
if ! mkfifo -m 600 "$FIFO" 2>"$ERR"; then
  warn "cannot create the result channel $FIFO: $(last_error)"
  exit 2
fi
# cat opens the FIFO (blocking until the wrapper opens it too) and copies it here until its end.
cat "$FIFO" >"$WORK/channel" 2>/dev/null &
reader=$!

# 1. The attempt marker, and how many pods of this shard came before.
notes=()
if record_attempt "$SIMFLEET_ARTIFACTS_BUCKET" "${P}attempts/" job "$SIMFLEET_JOB"; then
  log "attempt $((recoveries + 1)) of shard $SHARD of ${SIMFLEET_JOB} ($P)"
else
  notes+=("$attempt_error")
  warn "$attempt_error; carrying on without the count of recoveries"
fi

# 2b. Follow the work container through the channel; SIGTERM ends the wait.
log "waiting for the work container's result on $FIFO"
connected=0
waited_from=$EPOCHSECONDS
ended=0
connect() {
  if [ "$connected" = 0 ] && grep -q '^started ' "$WORK/channel" 2>/dev/null; then
    rm -f "$FIFO" # from now on only the wrapper's open descriptor reaches the channel
    connected=1
    log "the work container's wrapper is connected"
  fi
}
while [ "$terminated" = 0 ]; do
  connect
  if ! kill -0 "$reader" 2>/dev/null; then
    ended=1
    break
  fi
  [ "$connected" = 1 ] || [ $((EPOCHSECONDS - waited_from)) -lt "$START_WAIT" ] || break
  [ $((EPOCHSECONDS - waited_from)) -lt "$DONE_WAIT" ] || break
  pause "$POLL"
done
if [ "$terminated" = 1 ] && [ "$ended" = 0 ]; then
  log "SIGTERM: giving the work container up to ${TERM_WAIT} s to end"
  until [ "$ended" = 1 ] || [ "$EPOCHSECONDS" -ge $((term_at + TERM_WAIT)) ]; do
    connect
    if ! kill -0 "$reader" 2>/dev/null; then
      ended=1
      break
    fi
    pause "$POLL"
  done
fi
connect
[ "$ended" = 1 ] && wait "$reader" 2>/dev/null
[ "$ended" = 1 ] || kill "$reader" 2>/dev/null
reader=""

# What the work container says happened: the line after "started", and nothing else.
grep -v '^started ' "$WORK/channel" >"$WORK/result" 2>/dev/null
result_lines=$(grep -c . "$WORK/result")
if [ "$result_lines" -gt 1 ]; then
  status=Failed exit_code=null
  reason="marker forged or left over: the result channel carried $result_lines lines, not the wrapper's one result"
elif [ "$result_lines" = 1 ]; then
  read_done_marker "$WORK/result" "the work container's result"
elif [ "$connected" = 0 ] && [ "$terminated" = 1 ]; then
  status=Interrupted exit_code=null
  reason="terminated before the work container's wrapper connected to $FIFO"
elif [ "$connected" = 0 ]; then
  status=Failed exit_code=null
  reason="the work container's wrapper never connected to $FIFO within ${START_WAIT} s"
elif [ "$ended" = 1 ]; then
  status=Failed exit_code=null
  reason="the work container stopped without a result (killed, out of memory?)"
elif [ "$terminated" = 1 ]; then
  status=Interrupted exit_code=null
  reason="terminated before the work container ended (waited ${TERM_WAIT} s after SIGTERM)"
else
  status=Interrupted exit_code=null
  reason="the work container gave no result within ${DONE_WAIT} s"
fi
log "the work container ended: $status${reason:+ ($reason)}"

# 3. Outputs, from a Succeeded shard only, under this attempt's own prefix.
OUTPUTS_PREFIX="${P}outputs/${attempt}/"
failures=()
shipped=() ship_failed=() ship_refused=() ship_unstable=()
untagged=null untagged_relatives=()
# Each output's tag, by its key (common.sh tag_keys).
outputs_tag_list() {
  local relative
  : >"$WORK/tags"
  for relative in "$@"; do
    printf 'outputs\0%s\0' "${OUTPUTS_PREFIX}${relative}" >>"$WORK/tags"
  done
}
if [ "$status" != Succeeded ]; then
  log "not uploading outputs of a $status shard (only a Succeeded attempt's outputs go up)"
elif [ -d "$OUTPUTS_DIR" ]; then
  ship_tree "$OUTPUTS_DIR" "$SIMFLEET_ARTIFACTS_BUCKET" "$OUTPUTS_PREFIX"
  failures+=("${ship_failed[@]/#/outputs/}" "${ship_refused[@]/#/outputs/}")
  log "uploaded ${#shipped[@]} outputs to s3://$SIMFLEET_ARTIFACTS_BUCKET/$OUTPUTS_PREFIX"
  # Before index.json, unless a SIGTERM stops it (on_term): then the index first, and what has no tag yet after it.
  outputs_tag_list "${shipped[@]}"
  tag_before_index "$SIMFLEET_ARTIFACTS_BUCKET" "$KIND_TAG" "$WORK/tags" "$OUTPUTS_PREFIX" outputs "${shipped[@]}"
  HARD_DEADLINE="" # on_term's deadline stopped the tagging; index.json's write has its own (INDEX_RETRY)
else
  log "no $OUTPUTS_DIR: nothing to upload"
fi

if [ ${#failures[@]} -gt 0 ]; then
  # The first few, so that a shard with thousands of failed files still gets a readable reason.
  summary=$(printf '%s; ' "${failures[@]:0:5}")
  summary=${summary%; }
  [ ${#failures[@]} -le 5 ] || summary+="; and $((${#failures[@]} - 5)) more"
  reason="upload failed: ${summary}${reason:+ (job: $status, $reason)}"
  status=Failed
  warn "$reason"
elif [ ${#ship_unstable[@]} -gt 0 ]; then
  status=Incomplete
  reason="outputs were still being written while they were shipped: ${ship_unstable[*]:0:3}"
  warn "$reason"
fi
if [ ${#notes[@]} -gt 0 ]; then
  note=$(printf '%s; ' "${notes[@]}")
  reason="${reason:+$reason; }${note%; }"
fi

# 4. index.json, last.
index_written=1
if ! printf '%s\0' "${shipped[@]}" | jq -Rs \
  --arg job "$SIMFLEET_JOB" --arg hash "$SIMFLEET_SPEC_HASH" --argjson shard "$SHARD" --arg status "$status" \
  --arg reason "$reason" --argjson exitCode "$exit_code" --arg started "${started:-}" \
  --arg completed "$(utc_now)" --arg attempt "$attempt" \
  --arg prefix "s3://$SIMFLEET_ARTIFACTS_BUCKET/$OUTPUTS_PREFIX" --argjson recoveries "$recoveries" \
  --argjson untagged "$untagged" \
  'def null_if_empty: if . == "" then null else . end;
   (split("\u0000") | map(select(. != "")) | sort) as $files
   | {job: $job, specHash: $hash, shard: $shard, status: $status, reason: ($reason | null_if_empty),
      exitCode: $exitCode, startTime: ($started | null_if_empty), completionTime: $completed, attempt: $attempt,
      outputsPrefix: (if ($files | length) > 0 or $status == "Succeeded" then $prefix else null end), outputFiles: $files,
      outputs: ($files | length), recoveries: $recoveries, untaggedOutputs: $untagged}' >"$WORK/index.json"; then
  warn "could not build index.json"
  index_written=0
elif ! retry_until $((EPOCHSECONDS + INDEX_RETRY)) put_json "$SIMFLEET_ARTIFACTS_BUCKET" "${P}index.json" "$WORK/index.json"; then
  warn "could not write s3://$SIMFLEET_ARTIFACTS_BUCKET/${P}index.json: $(last_error)"
  index_written=0
else
  log "$status: s3://$SIMFLEET_ARTIFACTS_BUCKET/${P}index.json"
fi

# 5. The shard's Pushgateway group (common.sh pushgateway_retire): the program may have pushed until it ended, so its
# group is kept the whole linger after index.json (not after SIGTERM), then deleted.
if [ -n "$PUSHGATEWAY_URL" ] && [ -n "$METRICS_GROUP" ]; then
  pushgateway_retire "$PUSHGATEWAY_URL" "$METRICS_GROUP" "$LINGER" || true
fi

# 6. After a SIGTERM, the outputs' tags that did not go on before index.json, until the kubelet stops the pod.
if [ "$index_written" = 1 ] && [ "$terminated" = 1 ] && [ "${#untagged_relatives[@]}" -gt 0 ]; then
  HARD_DEADLINE=""
  log "tagging ${#untagged_relatives[@]} outputs until the pod is stopped"
  outputs_tag_list "${untagged_relatives[@]}"
  tag_keys "$SIMFLEET_ARTIFACTS_BUCKET" "$KIND_TAG" "$WORK/tags"
fi

# 7. The pod's result matches index.json (and is a failure when there is no index.json).
[ "$index_written" = 1 ] && [ "$status" = Succeeded ]
