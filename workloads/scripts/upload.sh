#!/bin/bash
# artifact-uploader, a main container of the run pod beside glue (AWS CLI v2 image: bash, coreutils, jq,
# findutils, aws). It runs from pod start to the end and follows glue by its heartbeat, not by a clock:
#
# 1. While glue's heartbeat file (rewritten every second by glue's own loop) stays fresh it waits, however slow the
#    simulation, shipping each new partial checkpoint (with SIMFLEET_CHECKPOINT_EVERY_SECONDS > 0, looked for every
#    SIMFLEET_PARTIAL_POLL_SECONDS) and publishing <P>progress.json every SIMFLEET_PROGRESS_SECONDS, both in the
#    background. The wait ends when glue's done marker appears (one carrying the heartbeat's incarnation: any other
#    is forged or left over and changes nothing), when the heartbeat is older than SIMFLEET_HEARTBEAT_TIMEOUT_SECONDS
#    (glue died without a result: killed, out of memory), when glue never beat within SIMFLEET_START_WAIT_SECONDS, or
#    on SIGTERM.
# 2. SIGTERM, to this script's guardian (PID 1, term.sh guard_term: no trap in the shell that works, which bash 5.2
#    could lose), is seen at once, except during the Pushgateway DELETE (10 s at most): every aws call runs in the
#    background. One seen while the artifacts are tagged before index.json stops the tagging: the index first, the tags
#    after it.
#    glue gets SIMFLEET_TERM_WAIT_SECONDS to write its marker (it saves a partial checkpoint first); uploads stop SIMFLEET_TERM_SHIP_SECONDS after the
#    SIGTERM, index.json is written by SIMFLEET_TERM_INDEX_SECONDS (a spot notice is 120 s), and the artifacts' tags
#    come after it, with what time is left. The last partial checkpoint in S3 is the fallback when the one glue saved
#    on SIGTERM cannot go up in time.
# 3. It ships the latest partial checkpoint when the run did not succeed; the out-checkpoint when glue saved one (before
#    the artifacts: it is what the run was for); /artifacts/{logs,videos,metrics}/** (many files per aws process,
#    regular files only, each sent again when it changed meanwhile) tagged $SIMFLEET_KIND_TAG=<kind>; and LAST
#    <P>index.json, retried for SIMFLEET_INDEX_RETRY_SECONDS beyond the CLI's own retries (docs/records.md describes
#    every field):
#      {run, specHash, seed, status, reason, exitCode, startTime, completionTime, checkpoint, partialCheckpoint,
#       partialSequence, recoveries, resumedFrom, steps, artifacts, untaggedArtifacts}
#    status is glue's (Succeeded | Failed | Interrupted | Incomplete), except: Failed when glue stopped without a
#    result, when an upload failed, or when something that is not a regular file was in the way; Incomplete when an
#    artifact was still changing after its last upload; Interrupted when SIGTERM came before glue's marker.
# 5. With SIMFLEET_PUSHGATEWAY_URL, after index.json (written or not): the seed's Pushgateway group, named by glue's
#    <checkpoints>/.metrics (glue_runtime/metrics.py), is kept until SIMFLEET_METRICS_LINGER_SECONDS after glue's last
#    push that may have reached it (lastPushAt; none: no linger), so the collector scrapes the final values once, then
#    deleted (common.sh pushgateway_retire, bounded by 10 s). After SIGTERM: no linger, and the DELETE ends by
#    SIMFLEET_TERM_METRICS_SECONDS after the SIGTERM (or is skipped, with a warning, when that time has passed). A
#    failure there is a warning; it changes neither index.json nor the exit code. Then, after a SIGTERM, the tags.
#
# Env: as fetch.sh, plus SIMFLEET_SPEC_HASH, SIMFLEET_SAVE_CHECKPOINT, SIMFLEET_KIND_TAG (simfleet-kind),
# SIMFLEET_ARTIFACTS_DIR (/artifacts), SIMFLEET_DONE_MARKER (<checkpoints>/.done), SIMFLEET_HEARTBEAT_FILE
# (<checkpoints>/.heartbeat), and whole seconds: SIMFLEET_HEARTBEAT_TIMEOUT_SECONDS (30), SIMFLEET_START_WAIT_SECONDS
# (1800), SIMFLEET_POLL_SECONDS (1, may be fractional), SIMFLEET_PARTIAL_POLL_SECONDS (30), SIMFLEET_CHECKPOINT_EVERY_SECONDS (0),
# SIMFLEET_PROGRESS_SECONDS (60), SIMFLEET_TERM_WAIT_SECONDS (45), SIMFLEET_TERM_SHIP_SECONDS (95),
# SIMFLEET_TERM_INDEX_SECONDS (115), SIMFLEET_INDEX_RETRY_SECONDS (120), SIMFLEET_METRICS_LINGER_SECONDS (40),
# SIMFLEET_TERM_METRICS_SECONDS (118); SIMFLEET_TAG_PARALLEL (4); SIMFLEET_PUSHGATEWAY_URL (unset: no deletion),
# SIMFLEET_METRICS_RECORD (<checkpoints>/.metrics).
# Exit: 0 only when index.json says Succeeded; 2 at once on a malformed setting.
#
# Not `set -e`: one failed upload must not stop the others, and index.json must be written whatever else
# happened. Every command whose failure matters is checked where it runs.
set -uo pipefail
shopt -s nullglob dotglob
NAME=artifact-uploader
# shellcheck source=common.sh
source "${BASH_SOURCE[0]%/*}/common.sh" # (no $(...) before guard_term: see common.sh's first lines)

# From the first moment: a SIGTERM at any point ends the waits and starts the clock of the spot notice. The guardian
# (term.sh guard_term) holds the trap; this runs as its worker, where term_poll sets terminated=1 and term_at (the
# second of the SIGTERM) and then calls on_term.
on_term() {
  HARD_DEADLINE=$((term_at + ${TERM_SHIP:-95}))
  # While the artifacts are tagged before index.json: stop there (await's deadline, now), the index comes first.
  [ "${tagging:-0}" = 0 ] || HARD_DEADLINE=$term_at
}
guard_term notify "$@"

CHECKPOINTS_DIR=${SIMFLEET_CHECKPOINTS_DIR:-/checkpoints}
ARTIFACTS_DIR=${SIMFLEET_ARTIFACTS_DIR:-/artifacts}
MARKER=${SIMFLEET_DONE_MARKER:-$CHECKPOINTS_DIR/.done}
HEARTBEAT=${SIMFLEET_HEARTBEAT_FILE:-$CHECKPOINTS_DIR/.heartbeat}
HEARTBEAT_TIMEOUT=${SIMFLEET_HEARTBEAT_TIMEOUT_SECONDS:-30}
START_WAIT=${SIMFLEET_START_WAIT_SECONDS:-1800}
POLL=${SIMFLEET_POLL_SECONDS:-1}
PARTIAL_POLL=${SIMFLEET_PARTIAL_POLL_SECONDS:-30}
PROGRESS_EVERY=${SIMFLEET_PROGRESS_SECONDS:-60}
TERM_WAIT=${SIMFLEET_TERM_WAIT_SECONDS:-45}
TERM_SHIP=${SIMFLEET_TERM_SHIP_SECONDS:-95}
TERM_INDEX=${SIMFLEET_TERM_INDEX_SECONDS:-115}
INDEX_RETRY=${SIMFLEET_INDEX_RETRY_SECONDS:-120}
TAG_PARALLEL=${SIMFLEET_TAG_PARALLEL:-4}
KIND_TAG=${SIMFLEET_KIND_TAG:-simfleet-kind}
PUSHGATEWAY_URL=${SIMFLEET_PUSHGATEWAY_URL:-}
METRICS_RECORD=${SIMFLEET_METRICS_RECORD:-$CHECKPOINTS_DIR/.metrics}
LINGER=${SIMFLEET_METRICS_LINGER_SECONDS:-40}
TERM_METRICS=${SIMFLEET_TERM_METRICS_SECONDS:-118}
KINDS=(logs videos metrics)
require_whole_seconds SIMFLEET_HEARTBEAT_TIMEOUT_SECONDS "$HEARTBEAT_TIMEOUT" SIMFLEET_START_WAIT_SECONDS "$START_WAIT" \
  SIMFLEET_PARTIAL_POLL_SECONDS "$PARTIAL_POLL" SIMFLEET_PROGRESS_SECONDS "$PROGRESS_EVERY" \
  SIMFLEET_TERM_WAIT_SECONDS "$TERM_WAIT" SIMFLEET_TERM_SHIP_SECONDS "$TERM_SHIP" \
  SIMFLEET_TERM_INDEX_SECONDS "$TERM_INDEX" SIMFLEET_INDEX_RETRY_SECONDS "$INDEX_RETRY" SIMFLEET_TAG_PARALLEL "$TAG_PARALLEL" \
  SIMFLEET_METRICS_LINGER_SECONDS "$LINGER" SIMFLEET_TERM_METRICS_SECONDS "$TERM_METRICS" &&
  require_seconds SIMFLEET_POLL_SECONDS "$POLL" || exit 2
[ "$terminated" = 0 ] || HARD_DEADLINE=$((term_at + TERM_SHIP)) # a SIGTERM before TERM_SHIP was read
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ERR="$WORK/err"

if [ "${SIMFLEET_PER_SEED:-false}" = true ]; then
  seed=$(jq -er ".[${JOB_COMPLETION_INDEX:-none}]" <<<"$SIMFLEET_SEEDS") || {
    warn "no seed at index '${JOB_COMPLETION_INDEX:-}' of $SIMFLEET_SEEDS"
    exit 2
  }
  P="${SIMFLEET_PREFIX}seed-${seed}/"
else
  seed=$(jq -er '.[0]' <<<"$SIMFLEET_SEEDS") || {
    warn "SIMFLEET_SEEDS is not a JSON list: $SIMFLEET_SEEDS"
    exit 2
  }
  P=$SIMFLEET_PREFIX
fi
CHECKPOINTS_BUCKET=$SIMFLEET_CHECKPOINTS_BUCKET
ARTIFACTS_BUCKET=$SIMFLEET_ARTIFACTS_BUCKET
PARTIAL_URI="s3://$CHECKPOINTS_BUCKET/${P}partial.mstate"

checkpoint_every_on() { [[ ! ${SIMFLEET_CHECKPOINT_EVERY_SECONDS:-0} =~ ^0*\.?0*$ ]]; }

# --- Partial checkpoints ------------------------------------------------------------------------------------------
# The checkpoint goes to a staging key first, read from the file as it was opened (glue renames each new one into
# place, so the open file never changes), and is copied (server side) onto partial.mstate only when it held still; then
# partial.json, read before the checkpoint was opened, describes it or an older state, never a newer one. The promotion
# and the record retry beyond the CLI's own retries. Runs in the background: it writes the sequence now in S3 to
# $WORK/partial.shipped, or why it failed to $WORK/partial.error.
echo "" >"$WORK/partial.shipped"
ship_partial() {
  local json="$CHECKPOINTS_DIR/partial.json" mstate="$CHECKPOINTS_DIR/partial.mstate" sequence before after fd
  local deadline=$((EPOCHSECONDS + INDEX_RETRY))
  [ -n "$HARD_DEADLINE" ] && ((deadline > HARD_DEADLINE)) && deadline=$HARD_DEADLINE
  [ -f "$json" ] && { [ -e "$mstate" ] || [ -L "$mstate" ]; } || return 0
  cp "$json" "$WORK/partial.json" || return 0
  sequence=$(jq -er '.sequence' "$WORK/partial.json" 2>"$ERR") || {
    echo "partial.json has no sequence: $(last_error)" >"$WORK/partial.error"
    return 1
  }
  [ "$sequence" != "$(<"$WORK/partial.shipped")" ] || return 0
  if ! open_regular "$mstate" "$CHECKPOINTS_DIR"; then
    echo "partial checkpoint $sequence not shipped: $mstate is $refusal" >"$WORK/partial.error"
    return 1
  fi
  fd=$opened_fd
  before=$(stat_opened "$fd")
  run_bounded aws s3 cp --only-show-errors --no-progress "/proc/$BASHPID/fd/$fd" "$PARTIAL_URI.uploading" 2>"$ERR"
  case $? in
    0) ;;
    124)
      echo "partial checkpoint $sequence did not go up before the SIGTERM deadline" >"$WORK/partial.error"
      return 1
      ;;
    *)
      echo "partial checkpoint $sequence: $(last_error)" >"$WORK/partial.error"
      return 1
      ;;
  esac
  after=$(stat_opened "$fd")
  exec {fd}<&-
  if [ "$before" != "$after" ]; then
    echo "partial checkpoint $sequence was written to while it uploaded" >"$WORK/partial.error"
    return 2
  fi
  # S3-to-S3: AWS CLI v2 copies the source's tags by default (it reads them: the run role has GetObjectTagging on
  # runs/). The staging copy has none yet: it is tagged only below, after this copy.
  if ! retry_until "$deadline" aws s3 cp --only-show-errors "$PARTIAL_URI.uploading" "$PARTIAL_URI" 2>"$ERR" ||
    ! retry_until "$deadline" put_json "$CHECKPOINTS_BUCKET" "${P}partial.json" "$WORK/partial.json"; then
    echo "partial checkpoint $sequence: $(last_error)" >"$WORK/partial.error"
    return 1
  fi
  echo "$sequence" >"$WORK/partial.shipped"
  rm -f "$WORK/partial.error"
  log "shipped partial checkpoint $sequence to $PARTIAL_URI"
  # The staging copy is not deleted (the run role may delete nothing); tagged `staging`, it expires by the
  # checkpoints bucket's lifecycle rule a day later. Tagged only now, after the copy above: a copy takes the
  # source's tags, and partial.mstate itself must never carry this one.
  run_bounded aws s3api put-object-tagging --bucket "$CHECKPOINTS_BUCKET" --key "${P}partial.mstate.uploading" \
    --tagging "TagSet=[{Key=$KIND_TAG,Value=staging}]" 2>"$ERR" || warn "could not tag $PARTIAL_URI.uploading: $(last_error)"
}
ship_partials() {
  # Run as a background job: stopped at the SIGTERM deadline (await), its own aws call with it. Its own error file,
  # so the main shell's last_error is never this job's.
  ERR="$WORK/partial.err"
  # A checkpoint written to while it uploaded is tried again at once, a few times.
  for _ in 1 2 3; do
    ship_partial
    [ $? = 2 ] || break
  done
}
partial_job=""
start_partial_job() {
  [ -z "$partial_job" ] || ! kill -0 "$partial_job" 2>/dev/null || return 0
  ship_partials &
  partial_job=$!
}

# --- Progress -----------------------------------------------------------------------------------------------------
# <P>progress.json, from glue's heartbeat: where the seed stands, for `simfleet` to show without the Kubernetes API.
# One jq per look, reading the heartbeat once (common.sh JQ_READ): its beats, which say whether glue moved since the
# last record, and the record itself, written only when they did. The record's partialSequence is the partial job's
# last shipped sequence ($WORK/partial.shipped, one line: a number, or empty for none); a file caught mid-write (not
# one line) makes no record this time, and neither does a heartbeat whose (last) value has no `at`.
progress_job=""
published_beats=""
publish_progress() {
  local fields beats="" beats_read=0 record="" recorded=0
  [ -f "$HEARTBEAT" ] || return 0
  { [ -z "$progress_job" ] || ! kill -0 "$progress_job" 2>/dev/null; } || return 0
  fields=$(jq -rs --arg run "$SIMFLEET_RUN" --arg hash "$SIMFLEET_SPEC_HASH" --argjson seed "$seed" \
    --arg pod "${HOSTNAME:-}" --arg updated "$(utc_now)" --rawfile shipped "$WORK/partial.shipped" "$JQ_READ"'
    def record($sequence): {run: $run, specHash: $hash, seed: $seed, pod: $pod, phase: .phase, steps: .steps,
      simulationSeconds: .simulationSeconds, stopAfterSeconds: .stopAfterSeconds,
      partialSequence: $sequence, lastHeartbeat: (.at | floor | todate), updatedAt: $updated};
    ($shipped | if endswith("\n") then .[:-1] else . end) as $line
    | (select(length == 0 or (last | try ((.beats // "") | true) catch false))
       | (raw_lines(.beats // "") | assign("beats")), "beats_read=1"),
      (if $shipped == "" or ($line | split("\n") | length) > 1 then empty
       else ($line | tonumber? // null) as $sequence
         | ([.[] | try (record($sequence) | pretty("") + "\n")] | join("") | assign("record")),
           (select(length == 0 or (last | try (record($sequence) | true) catch false)) | "recorded=1")
       end)' "$HEARTBEAT" 2>/dev/null) || return 0
  eval "$fields"
  [ "$beats_read" = 1 ] || return 0 # a heartbeat whose (last) value .beats fails on: nothing read, as jq 1.6 failed
  [ "$beats" != "$published_beats" ] || return 0
  published_beats=$beats
  [ "$recorded" = 1 ] || return 0
  printf '%s' "$record" >"$WORK/progress.json"
  ERR="$WORK/progress.err" put_json "$ARTIFACTS_BUCKET" "${P}progress.json" "$WORK/progress.json" &
  progress_job=$!
}

# --- 1. Follow glue -----------------------------------------------------------------------------------------------
incarnation=""       # glue's, from its heartbeat
incarnation_stale="" # the heartbeat changed since incarnation was read
heartbeat_at=""
forged=""    # a marker that is not glue's was seen
glue_gone="" # why glue is known to have ended without a result
marker_steps=null checkpoint_saved=""
# glue_marker: whether glue's own done marker is there; when it is, what it says (common.sh read_done_marker: status,
# reason, exit_code, marker_steps, checkpoint_saved), from the same read.
glue_marker() {
  [ -f "$MARKER" ] || return 1
  read_heartbeat
  read_incarnation
  if [ -n "$incarnation" ] && read_done_marker "$MARKER" "glue's done marker" "$incarnation"; then
    return 0
  fi
  [ -n "$forged" ] || warn "a done marker glue did not write is at $MARKER: forged or left over; waiting for glue's own"
  forged=1
  return 1
}
read_heartbeat() {
  local mtime
  mtime=$(stat -c %Y "$HEARTBEAT" 2>/dev/null) || return 0
  if [ "$mtime" != "$heartbeat_at" ]; then
    heartbeat_at=$mtime
    incarnation_stale=1
  fi
}
# The incarnation of the heartbeat as of its last change, read only when a marker is there to be checked against it
# (glue rewrites the heartbeat every second: one jq a second otherwise).
read_incarnation() {
  [ -n "$incarnation_stale" ] || return 0
  incarnation_stale=""
  incarnation=""
  # (Only a regular file: a FIFO the user's code left in /checkpoints would hold jq's open for ever.)
  [ ! -f "$HEARTBEAT" ] || incarnation=$(jq -r '.incarnation // ""' "$HEARTBEAT" 2>/dev/null) || incarnation=""
}
heartbeat_age() { echo $((EPOCHSECONDS - heartbeat_at)); }
glue_steps() { { [ -f "$HEARTBEAT" ] && jq -r '.steps // "?"' "$HEARTBEAT" 2>/dev/null; } || echo "?"; }

log "following glue's heartbeat $HEARTBEAT (stale after ${HEARTBEAT_TIMEOUT} s) for ${SIMFLEET_RUN} ($P)"
started_at=$EPOCHSECONDS
next_partial=$((EPOCHSECONDS + PARTIAL_POLL))
next_progress=$EPOCHSECONDS
while [ "$terminated" = 0 ]; do
  read_heartbeat
  glue_marker && break
  if [ -z "$heartbeat_at" ]; then
    if [ $((EPOCHSECONDS - started_at)) -ge "$START_WAIT" ]; then
      glue_gone="glue never started: no heartbeat within ${START_WAIT} s"
      break
    fi
  elif [ "$(heartbeat_age)" -gt "$HEARTBEAT_TIMEOUT" ]; then
    glue_marker && break # it may have written its marker just now
    glue_gone="glue stopped without a result (killed, out of memory?): its last heartbeat was $(heartbeat_age) s ago, at step $(glue_steps)"
    break
  fi
  if checkpoint_every_on && [ "$EPOCHSECONDS" -ge "$next_partial" ]; then
    start_partial_job
    next_partial=$((EPOCHSECONDS + PARTIAL_POLL))
  fi
  if [ "$EPOCHSECONDS" -ge "$next_progress" ]; then
    publish_progress
    next_progress=$((EPOCHSECONDS + PROGRESS_EVERY))
  fi
  pause "$POLL"
done

# --- 2. After SIGTERM, glue's last words --------------------------------------------------------------------------
if [ "$terminated" = 1 ] && ! glue_marker && [ -z "$glue_gone" ]; then
  log "SIGTERM: giving glue up to ${TERM_WAIT} s to save a partial checkpoint and write its done marker"
  term_wait_until=$((term_at + TERM_WAIT))
  while ! glue_marker && [ "$EPOCHSECONDS" -lt "$term_wait_until" ]; do
    read_heartbeat
    if [ -n "$heartbeat_at" ] && [ "$(heartbeat_age)" -gt "$HEARTBEAT_TIMEOUT" ]; then
      break
    fi
    pause "$POLL"
  done
fi

# What glue says happened.
steps=null
if [ -n "$glue_gone" ]; then
  status=Failed exit_code=null reason=$glue_gone
elif glue_marker; then
  steps=$marker_steps # (status, reason and exit_code too: read_done_marker)
elif [ "$terminated" = 1 ]; then
  status=Interrupted exit_code=null
  reason="terminated before glue wrote its done marker (waited $((EPOCHSECONDS - term_at)) s after SIGTERM)"
else
  status=Failed exit_code=null reason="glue ended without a done marker"
fi
[ -z "$forged" ] || [[ $reason == *"forged or left over"* ]] || reason="${reason:+$reason; }a done marker glue did not write was found (forged or left over)"
log "glue ended: $status${reason:+ ($reason)}"

# --- 3. Ship ------------------------------------------------------------------------------------------------------
failures=()
# The partial checkpoint (the one glue saved on SIGTERM, or the latest periodic one) goes up beside the artifacts.
if [ "$status" != Succeeded ]; then
  [ -z "$partial_job" ] || await "$partial_job"
  partial_job=""
  [ -n "$HARD_DEADLINE" ] && [ "$EPOCHSECONDS" -ge "$HARD_DEADLINE" ] || start_partial_job
fi

# The out-checkpoint first, when glue saved it (Succeeded, or Incomplete: the brain itself is whole): it is what the run
# was for, and after a SIGTERM the artifacts must not use up the time it needs.
checkpoint=""
if [ "${SIMFLEET_SAVE_CHECKPOINT:-false}" = true ] && { [ "$status" = Succeeded ] || [ "$status" = Incomplete ]; }; then
  out="$CHECKPOINTS_DIR/out.mstate"
  uri="s3://$CHECKPOINTS_BUCKET/${P}out.mstate"
  if [ "$checkpoint_saved" != true ]; then # (glue's marker: read_done_marker)
    failures+=("checkpoint.save is set but glue saved no checkpoint")
  elif ! open_regular "$out" "$CHECKPOINTS_DIR"; then
    failures+=("checkpoint $out is $refusal")
  else
    fd=$opened_fd
    deadline=$((EPOCHSECONDS + INDEX_RETRY))
    retry_until "$deadline" aws s3 cp --only-show-errors --no-progress "/proc/$BASHPID/fd/$fd" "$uri" 2>"$ERR"
    case $? in
      0) checkpoint=$uri ;;
      124) failures+=("checkpoint $uri: not uploaded: stopped at the SIGTERM deadline") ;;
      *) failures+=("checkpoint $uri: $(last_error)") ;;
    esac
    exec {fd}<&-
  fi
fi

for entry in "$ARTIFACTS_DIR"/*; do
  case ${entry##*/} in
    logs | videos | metrics) ;;
    *) warn "skipping $entry (only logs/, videos/ and metrics/ are uploaded)" ;;
  esac
done
present_kinds=()
for kind in "${KINDS[@]}"; do
  [ ! -e "$ARTIFACTS_DIR/$kind" ] && [ ! -L "$ARTIFACTS_DIR/$kind" ] || present_kinds+=("$kind")
done
shipped=() ship_failed=() ship_refused=() ship_unstable=()
[ ${#present_kinds[@]} -eq 0 ] || ship_tree "$ARTIFACTS_DIR" "$ARTIFACTS_BUCKET" "$P" "${present_kinds[@]}"
log "uploaded ${#shipped[@]} artifacts to s3://$ARTIFACTS_BUCKET/$P"
failures+=("${ship_failed[@]}" "${ship_refused[@]}")

# The partial checkpoint's upload, bounded like everything after SIGTERM. After SIGTERM one that could not go up in
# time is a note, not a failure: the one before it is still in S3 (partialSequence says which), whole.
partial_note=""
[ -z "$partial_job" ] || await "$partial_job"
partial_sequence=$(<"$WORK/partial.shipped")
if [ "$status" != Succeeded ]; then
  newest=""
  [ ! -f "$CHECKPOINTS_DIR/partial.json" ] || newest=$(jq -r '.sequence // ""' "$CHECKPOINTS_DIR/partial.json" 2>/dev/null)
  if [ -n "$newest" ] && [ "$newest" != "$partial_sequence" ] && [ "$terminated" = 1 ] && [ ! -s "$WORK/partial.error" ]; then
    echo "partial checkpoint $newest did not go up before the SIGTERM deadline" >"$WORK/partial.error"
  fi
  if [ -s "$WORK/partial.error" ] && [ "$terminated" = 1 ]; then
    partial_note="$(<"$WORK/partial.error")"
  elif [ -s "$WORK/partial.error" ]; then
    failures+=("$(<"$WORK/partial.error")")
  fi
fi

# Tags: before index.json normally; after it when a SIGTERM is counting down (the index matters more).
tag_list() {
  local relative
  : >"$WORK/tags"
  for relative in "$@"; do
    printf '%s\0%s\0' "${relative%%/*}" "${P}${relative}" >>"$WORK/tags"
  done
}
tag_list "${shipped[@]}"
# What has no tag yet after it: all of them after a SIGTERM before the tagging, the rest of them after one during it,
# the ones that failed otherwise. The tagging after index.json takes up only these.
tag_before_index "$ARTIFACTS_BUCKET" "$KIND_TAG" "$WORK/tags" "$P" artifacts "${shipped[@]}"

if [ ${#failures[@]} -gt 0 ]; then
  # The first few, so that thousands of failed files still give a readable reason.
  summary=$(printf '%s; ' "${failures[@]:0:5}")
  summary=${summary%; }
  [ ${#failures[@]} -le 5 ] || summary+="; and $((${#failures[@]} - 5)) more"
  reason="upload failed: ${summary}${reason:+ (glue: $status, $reason)}"
  status=Failed
  warn "$reason"
elif [ ${#ship_unstable[@]} -gt 0 ] && [ "$status" = Succeeded ]; then
  status=Incomplete
  reason="artifacts were still being written while they were shipped: ${ship_unstable[*]:0:3}"
  [ ${#ship_unstable[@]} -le 3 ] || reason+=" and $((${#ship_unstable[@]} - 3)) more"
  warn "$reason"
fi

# --- 4. index.json, last ------------------------------------------------------------------------------------------
# fetch.sh's .started when it is one JSON object, otherwise {}. It, glue's reason (the user's exception text, unbounded),
# the steps and the exit code reach jq through files: as arguments, one longer than Linux lets an argument be (128 KiB)
# kept jq from starting, and the seed from having an index.json at all.
# (Only a regular file, as everywhere the user's code can write: jq would wait for ever on a FIFO's open.)
{ [ -f "$CHECKPOINTS_DIR/.started" ] && jq -cs 'if length == 1 and (.[0] | type) == "object" then .[0] else {} end' \
  "$CHECKPOINTS_DIR/.started" >"$WORK/started.json" 2>/dev/null; } || echo '{}' >"$WORK/started.json"
printf '%s' "$reason" >"$WORK/reason"
printf '%s\n' "$exit_code" >"$WORK/exit_code.json"
printf '%s\n' "$steps" >"$WORK/steps.json"
# The reason gets the notes of .started (joined by "; ") and then the partial checkpoint's note; partialCheckpoint is
# named when a partial checkpoint of this seed went up, or when this pod resumed from it.
jq -n \
  --arg run "$SIMFLEET_RUN" --arg hash "$SIMFLEET_SPEC_HASH" --argjson seed "$seed" --arg status "$status" \
  --rawfile reason "$WORK/reason" --slurpfile exitCode "$WORK/exit_code.json" --slurpfile started "$WORK/started.json" \
  --arg completed "$(utc_now)" --arg checkpoint "$checkpoint" --arg partial_uri "$PARTIAL_URI" \
  --arg partial_note "$partial_note" --arg sequence "$partial_sequence" --slurpfile steps "$WORK/steps.json" \
  --argjson artifacts "${#shipped[@]}" --argjson untagged "$untagged" "$JQ_READ"'
   def null_if_empty: if . == "" then null else . end;
   def and_then($note): if $note == "" then . elif . == "" then $note else . + "; " + $note end;
   $started[0] as $started | $exitCode[0] as $exitCode | $steps[0] as $steps
   | ([$started] | raw_lines((.notes // []) | join("; "))) as $notes
   | (if $sequence != "" or ([$started] | raw_lines(.resumedFrom // "")) == $partial_uri then $partial_uri else "" end)
     as $partial
   | {run: $run, specHash: $hash, seed: $seed, status: $status,
    reason: ($reason | and_then($notes) | and_then($partial_note) | null_if_empty),
    exitCode: $exitCode, startTime: $started.startTime, completionTime: $completed,
    checkpoint: ($checkpoint | null_if_empty), partialCheckpoint: ($partial | null_if_empty),
    partialSequence: ($sequence | tonumber? // null),
    recoveries: (if $started | has("recoveries") then $started.recoveries else 0 end),
    resumedFrom: $started.resumedFrom, steps: $steps, artifacts: $artifacts, untaggedArtifacts: $untagged}' \
  >"$WORK/index.json" || {
  warn "could not build index.json"
  exit 1
}
if [ "$terminated" = 1 ]; then
  index_deadline=$((term_at + TERM_INDEX))
  HARD_DEADLINE=$index_deadline
else
  index_deadline=$((EPOCHSECONDS + INDEX_RETRY))
fi
index_written=1
if ! retry_until "$index_deadline" put_json "$ARTIFACTS_BUCKET" "${P}index.json" "$WORK/index.json"; then
  warn "could not write s3://$ARTIFACTS_BUCKET/${P}index.json: $(last_error)"
  index_written=0
else
  log "$status: s3://$ARTIFACTS_BUCKET/${P}index.json"
fi

# --- 5. The seed's Pushgateway group ------------------------------------------------------------------------------
# The group is the seed's own, job/simfleet-run/run/<run>/seed/<seed> (run names and seeds need no @base64); glue's
# .metrics says that it pushed and when its last push ended. The group named there is only checked, never used: the
# file is in a directory user code can write, and the uploader deletes nothing but its own seed's group. The group is
# kept until the collector
# had one scrape interval and timeout after that push (only what is left of it: the GPU is held meanwhile), then
# deleted. After SIGTERM there is no linger, and the DELETE must end by SIMFLEET_TERM_METRICS_SECONDS. Also when
# index.json could not be written: stale metrics help nobody. A failure is a warning; it changes nothing reported.
if [ -n "$PUSHGATEWAY_URL" ] && [ -f "$METRICS_RECORD" ]; then
  metrics_group="job/simfleet-run/run/$SIMFLEET_RUN/seed/$seed"
  pushed_at="" named=""
  eval "$(jq -rs "$JQ_READ"'(raw_lines(.lastPushAt // empty | ceil) | assign("pushed_at")),
    (raw_lines(.group // empty) | assign("named"))' "$METRICS_RECORD" 2>/dev/null)"
  [ "$named" = "$metrics_group" ] || warn "$METRICS_RECORD names the group '$named'; deleting the seed's own, $metrics_group"
  if [ "$terminated" = 1 ]; then
    left=$((term_at + TERM_METRICS - EPOCHSECONDS))
    if [ "$left" -ge 1 ]; then
      pushgateway_retire "$PUSHGATEWAY_URL" "$metrics_group" 0 "$((left < 10 ? left : 10))" || true
    else
      warn "not deleting the Pushgateway group $metrics_group: no time left before the end of the spot notice"
    fi
  else
    linger=0
    [[ ! $pushed_at =~ ^[0-9]+$ ]] || linger=$((pushed_at + LINGER - EPOCHSECONDS))
    ((linger <= LINGER)) || linger=$LINGER
    pushgateway_retire "$PUSHGATEWAY_URL" "$metrics_group" "$linger" || true
  fi
fi

[ "$index_written" = 1 ] || exit 1
if [ "$terminated" = 1 ] && [ "$untagged" -gt 0 ]; then
  HARD_DEADLINE=""
  log "tagging $untagged artifacts until the pod is stopped"
  tag_list "${untagged_relatives[@]}"
  tag_keys "$ARTIFACTS_BUCKET" "$KIND_TAG" "$WORK/tags"
fi
[ "$status" = Succeeded ]
