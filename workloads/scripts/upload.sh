#!/bin/bash
# artifact-uploader, a main container of the run pod beside glue (AWS CLI v2 image: bash, coreutils, jq,
# findutils, aws). It runs from pod start to the end:
#
# 1. Until glue's done marker appears (at most SIMFLEET_DONE_WAIT_SECONDS), ships each new partial
#    checkpoint (partial.mstate + partial.json, when partial.json's sequence changed; polled every
#    SIMFLEET_PARTIAL_POLL_SECONDS, only when SIMFLEET_CHECKPOINT_EVERY_SECONDS > 0).
# 2. On SIGTERM it stops waiting, gives glue SIMFLEET_TERM_WAIT_SECONDS to write its marker (glue saves a
#    partial checkpoint on SIGTERM), and ships what exists.
# 3. Uploads /artifacts/{logs,videos,metrics}/** tagged $SIMFLEET_KIND_TAG=<kind> (the lifecycle rules expire
#    them by that tag), the out-checkpoint when glue Succeeded and SIMFLEET_SAVE_CHECKPOINT=true, and LAST
#    <P>index.json, whose presence tells everyone that this seed has ended:
#      {run, specHash, seed, status, reason, exitCode, startTime, completionTime, checkpoint,
#       partialCheckpoint, recoveries, resumedFrom, steps}
#    status is the marker's (Succeeded | Failed | Interrupted); Interrupted without a marker; Failed with
#    reason "upload failed: ..." when any upload failed.
#
# Env: as fetch.sh, plus SIMFLEET_SPEC_HASH, SIMFLEET_SAVE_CHECKPOINT, SIMFLEET_KIND_TAG (simfleet-kind),
# SIMFLEET_DONE_WAIT_SECONDS (604800), SIMFLEET_PARTIAL_POLL_SECONDS (30), SIMFLEET_CHECKPOINT_EVERY_SECONDS (0),
# SIMFLEET_TERM_WAIT_SECONDS (60), SIMFLEET_ARTIFACTS_DIR (/artifacts), SIMFLEET_DONE_MARKER (<checkpoints>/.done).
# Exit: 0 only when index.json says Succeeded.
#
# Not `set -e`: one failed upload must not stop the others, and index.json must be written whatever else
# happened. Every command whose failure matters is checked where it runs.
set -uo pipefail
shopt -s globstar nullglob dotglob
NAME=artifact-uploader
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CHECKPOINTS_DIR=${SIMFLEET_CHECKPOINTS_DIR:-/checkpoints}
ARTIFACTS_DIR=${SIMFLEET_ARTIFACTS_DIR:-/artifacts}
MARKER=${SIMFLEET_DONE_MARKER:-$CHECKPOINTS_DIR/.done}
DONE_WAIT=${SIMFLEET_DONE_WAIT_SECONDS:-604800}
PARTIAL_POLL=${SIMFLEET_PARTIAL_POLL_SECONDS:-30}
TERM_WAIT=${SIMFLEET_TERM_WAIT_SECONDS:-60}
KIND_TAG=${SIMFLEET_KIND_TAG:-simfleet-kind}
KINDS=(logs videos metrics)
require_whole_seconds SIMFLEET_DONE_WAIT_SECONDS "$DONE_WAIT" SIMFLEET_PARTIAL_POLL_SECONDS "$PARTIAL_POLL" \
  SIMFLEET_TERM_WAIT_SECONDS "$TERM_WAIT" || exit 2
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
PARTIAL_URI="s3://$SIMFLEET_CHECKPOINTS_BUCKET/${P}partial.mstate"

checkpoint_every_on() { [[ ! ${SIMFLEET_CHECKPOINT_EVERY_SECONDS:-0} =~ ^0*\.?0*$ ]]; }

# Partial checkpoints. `aws s3 cp` reads a large file part by part, opening it by name each time, so a
# checkpoint replaced by glue mid-upload could go up as a mix of two. Each one therefore goes to a staging key
# first and is copied (server side) onto partial.mstate only if the file did not change while it uploaded
# (same inode, size, mtime and ctime, to the nanosecond); then partial.json, read before the checkpoint,
# describes it or an older state, never a newer one.
shipped_sequence=""
shipped_any=0
partial_error=""
# Returns 0 when there was nothing new or it went up, 1 when it failed (partial_error says why), 2 when the
# checkpoint changed during the upload (worth trying again at once).
ship_partial() {
  local json="$CHECKPOINTS_DIR/partial.json" mstate="$CHECKPOINTS_DIR/partial.mstate" sequence before after
  [ -f "$json" ] && [ -f "$mstate" ] || return 0
  cp "$json" "$WORK/partial.json" || return 0
  sequence=$(jq -er '.sequence' "$WORK/partial.json" 2>"$ERR") || {
    partial_error="partial.json has no sequence: $(last_error)"
    return 0
  }
  [ "$sequence" != "$shipped_sequence" ] || return 0
  before=$(stat -c '%i %s %y %z' "$mstate") || return 0
  if ! aws s3 cp --only-show-errors "$mstate" "$PARTIAL_URI.uploading" 2>"$ERR"; then
    partial_error="partial checkpoint $sequence: $(last_error)"
    warn "could not ship $partial_error; trying again later"
    return 1
  fi
  after=$(stat -c '%i %s %y %z' "$mstate" 2>/dev/null)
  if [ "$before" != "$after" ]; then
    log "partial checkpoint $sequence was replaced while it uploaded; shipping the newer one next"
    return 2
  fi
  # S3-to-S3: AWS CLI v2 copies the source's tags by default (it reads them: the run role has GetObjectTagging on
  # runs/). The staging copy has none yet: it is tagged only below, after this copy.
  if ! aws s3 cp --only-show-errors "$PARTIAL_URI.uploading" "$PARTIAL_URI" 2>"$ERR" ||
    ! put_json "$SIMFLEET_CHECKPOINTS_BUCKET" "${P}partial.json" "$WORK/partial.json"; then
    partial_error="partial checkpoint $sequence: $(last_error)"
    warn "could not ship $partial_error; trying again later"
    return 1
  fi
  # The staging copy is not deleted (the run role may delete nothing); tagged `staging`, it expires by the
  # checkpoints bucket's lifecycle rule a day later. Tagged only now, after the copy above: a copy takes the
  # source's tags, and partial.mstate itself must never carry this one.
  aws s3api put-object-tagging --bucket "$SIMFLEET_CHECKPOINTS_BUCKET" --key "${P}partial.mstate.uploading" \
    --tagging "TagSet=[{Key=$KIND_TAG,Value=staging}]" 2>"$ERR" || warn "could not tag $PARTIAL_URI.uploading: $(last_error)"
  shipped_sequence=$sequence
  shipped_any=1
  partial_error=""
  log "shipped partial checkpoint $sequence to $PARTIAL_URI"
}

# 1-2. Wait for glue, shipping partial checkpoints; SIGTERM ends the wait.
terminated=0
trap 'terminated=1' TERM
log "waiting for glue's done marker $MARKER (up to ${DONE_WAIT} s) for ${SIMFLEET_RUN} ($P)"
deadline=$(($(now) + DONE_WAIT))
next_partial=$(($(now) + PARTIAL_POLL))
while [ ! -f "$MARKER" ] && [ "$terminated" = 0 ]; do
  [ "$(now)" -lt "$deadline" ] || break
  if checkpoint_every_on && [ "$(now)" -ge "$next_partial" ]; then
    ship_partial || true # a failure or a change is retried at the next poll
    next_partial=$(($(now) + PARTIAL_POLL))
  fi
  pause 1
done
grace_after_term "$MARKER" "$terminated" "$TERM_WAIT" "glue" "save a partial checkpoint and write its done marker"

# What glue says happened.
read_done_marker "$MARKER" glue "glue's done marker" "$terminated" "$TERM_WAIT" "$DONE_WAIT"
steps=null
if [ -f "$MARKER" ] && jq -e 'type == "object"' "$MARKER" >/dev/null 2>&1; then
  steps=$(jq '.steps // null' "$MARKER")
fi
log "glue ended: $status${reason:+ ($reason)}"

failures=()
if [ "$status" != Succeeded ]; then
  # The one glue saved on SIGTERM, or the latest periodic one. Glue has exited, so it should not change again;
  # if it still does, a few more tries.
  for _ in 1 2 3; do
    ship_partial
    [ $? -eq 2 ] || break
  done
  [ -z "$partial_error" ] || failures+=("$partial_error")
fi

# 3. Artifacts, tagged by kind.
for entry in "$ARTIFACTS_DIR"/*; do
  case ${entry##*/} in
    logs | videos | metrics) ;;
    *) warn "skipping $entry (only logs/, videos/ and metrics/ are uploaded)" ;;
  esac
done
uploaded=0
for kind in "${KINDS[@]}"; do
  for file in "$ARTIFACTS_DIR/$kind"/**; do
    [ -f "$file" ] || continue
    relative=${file#"$ARTIFACTS_DIR/$kind/"}
    if upload_tagged "$file" "$ARTIFACTS_DIR" "$SIMFLEET_ARTIFACTS_BUCKET" "${P}${kind}/${relative}" "$KIND_TAG" "$kind"; then
      uploaded=$((uploaded + 1))
    else
      failures+=("$kind/$relative: $(last_error)")
    fi
  done
done
log "uploaded $uploaded artifacts to s3://$SIMFLEET_ARTIFACTS_BUCKET/$P"

# The out-checkpoint, only from a run that succeeded.
checkpoint=""
if [ "${SIMFLEET_SAVE_CHECKPOINT:-false}" = true ] && [ "$status" = Succeeded ]; then
  out="$CHECKPOINTS_DIR/out.mstate"
  uri="s3://$SIMFLEET_CHECKPOINTS_BUCKET/${P}out.mstate"
  if [ ! -f "$out" ]; then
    failures+=("checkpoint.save is set but $out was not written")
  elif aws s3 cp --only-show-errors "$out" "$uri" 2>"$ERR"; then
    checkpoint=$uri
  else
    failures+=("checkpoint $uri: $(last_error)")
  fi
fi

if [ ${#failures[@]} -gt 0 ]; then
  summary=$(printf '%s; ' "${failures[@]}")
  reason="upload failed: ${summary%; }${reason:+ (glue: $status, $reason)}"
  status=Failed
  warn "$reason"
fi

# index.json, last.
started="{}"
if [ -f "$CHECKPOINTS_DIR/.started" ] && jq -e 'type == "object"' "$CHECKPOINTS_DIR/.started" >/dev/null 2>&1; then
  started=$(jq -c . "$CHECKPOINTS_DIR/.started")
fi
partial_checkpoint=""
if [ "$shipped_any" = 1 ] || [ "$(jq -r '.resumedFrom // ""' <<<"$started")" = "$PARTIAL_URI" ]; then
  partial_checkpoint=$PARTIAL_URI
fi
jq -n \
  --arg run "$SIMFLEET_RUN" --arg hash "$SIMFLEET_SPEC_HASH" --argjson seed "$seed" --arg status "$status" \
  --arg reason "$reason" --argjson exitCode "$exit_code" --argjson started "$started" \
  --arg completed "$(utc_now)" --arg checkpoint "$checkpoint" \
  --arg partial "$partial_checkpoint" --argjson steps "$steps" \
  'def null_if_empty: if . == "" then null else . end;
   {run: $run, specHash: $hash, seed: $seed, status: $status, reason: ($reason | null_if_empty),
    exitCode: $exitCode, startTime: $started.startTime, completionTime: $completed,
    checkpoint: ($checkpoint | null_if_empty), partialCheckpoint: ($partial | null_if_empty),
    recoveries: ($started.recoveries // 0), resumedFrom: $started.resumedFrom, steps: $steps}' >"$WORK/index.json" || {
  warn "could not build index.json"
  exit 1
}
if ! put_json "$SIMFLEET_ARTIFACTS_BUCKET" "${P}index.json" "$WORK/index.json"; then
  warn "could not write s3://$SIMFLEET_ARTIFACTS_BUCKET/${P}index.json: $(last_error)"
  exit 1
fi
log "$status: s3://$SIMFLEET_ARTIFACTS_BUCKET/${P}index.json"
[ "$status" = Succeeded ]
