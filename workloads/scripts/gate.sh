#!/bin/bash
# gate: the init container of a small CPU-only pod that holds back a `run:<name>` continuation until its
# source run has finished (AWS CLI v2 image: bash, coreutils, jq, findutils, aws). Once this exits 0, the gate
# pod's main container releases the continuation's Job (workloads/renderers/run.py gate_job).
#
# Polls SIMFLEET_SOURCE_INDEX (the s3:// URI of the single-seed source run's index.json) every
# SIMFLEET_GATE_POLL_SECONDS (30, may be fractional):
#   status Succeeded           -> exit 0
#   Failed or Interrupted      -> keep waiting: the source Job may retry, or a replacement pod resume
#   no index yet, S3 hiccups   -> keep waiting
#   expired or invalid token   -> keep waiting: the IRSA token rotates
#   access denied (403)        -> exit 2 at once: waiting does not fix permissions
#   no such bucket             -> exit 2 at once: the source's bucket is not coming back by waiting
#   deadline reached           -> exit 1, quoting the last index seen (or "no index")
#   SIGTERM                    -> exit 143 at once, "gate: terminated", its aws call ended too
# The deadline is SIMFLEET_GATE_GRACE_SECONDS (900) past the source's own Job deadline
# (SIMFLEET_SOURCE_DEADLINE_SECONDS), counted from the start of the source's latest pod: its newest attempt marker
# beside the index (<prefix>attempts/). A preempted source that Kueue admits again starts a new pod, which restarts
# this clock as it restarts the Job's. Before the source's first pod, and in any case, at most
# SIMFLEET_GATE_DEADLINE_SECONDS (required) from the gate's own start.
set -euo pipefail
NAME=gate
# shellcheck source=common.sh
source "${BASH_SOURCE[0]%/*}/common.sh" # (no $(...) before guard_term: see common.sh's first lines)

# PID 1 of its container, to which the kernel drops an untrapped TERM and the pod would wait out its grace period: the
# guardian (term.sh guard_term) holds the trap and ends this script, and what it started, with SIGTERM (exit 143).
guard_term stop "$@"

INDEX=${SIMFLEET_SOURCE_INDEX:?must be the s3:// URI of the source run index.json}
DEADLINE_SECONDS=${SIMFLEET_GATE_DEADLINE_SECONDS:?must be set (whole seconds)}
SOURCE_DEADLINE=${SIMFLEET_SOURCE_DEADLINE_SECONDS:?must be the source Job activeDeadlineSeconds (whole seconds)}
GRACE_SECONDS=${SIMFLEET_GATE_GRACE_SECONDS:-900}
POLL_SECONDS=${SIMFLEET_GATE_POLL_SECONDS:-30}
require_whole_seconds SIMFLEET_GATE_DEADLINE_SECONDS "$DEADLINE_SECONDS" SIMFLEET_SOURCE_DEADLINE_SECONDS "$SOURCE_DEADLINE" \
  SIMFLEET_GATE_GRACE_SECONDS "$GRACE_SECONDS" && require_seconds SIMFLEET_GATE_POLL_SECONDS "$POLL_SECONDS" || exit 2
[[ $INDEX == s3://*/*index.json ]] || {
  warn "SIMFLEET_SOURCE_INDEX must be an s3:// URI of an index.json, not '$INDEX'"
  exit 2
}
rest=${INDEX#s3://}
BUCKET=${rest%%/*}
KEY=${rest#*/}
ATTEMPTS="${KEY%index.json}attempts/"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ERR="$WORK/err"

# The epoch second the source's latest pod started (its newest attempt marker), or nothing when none started yet or
# the listing failed (the absolute cap still holds).
latest_attempt() {
  local listed newest
  listed=$(aws s3api list-objects-v2 --bucket "$BUCKET" --prefix "$ATTEMPTS" \
    --query 'Contents[].LastModified' --output text 2>>"$ERR") || return 0
  # ISO 8601 times in one zone sort as text; "None" when there is no marker.
  newest=$(tr '\t' '\n' <<<"$listed" | grep -v '^None$' | sort | tail -n 1 || true)
  [ -n "$newest" ] || return 0
  date -d "$newest" +%s 2>/dev/null || true
}

started=$(now)
deadline=$((started + DEADLINE_SECONDS))
last_seen="no index"
while true; do
  : >"$ERR"
  if aws s3api get-object --bucket "$BUCKET" --key "$KEY" "$WORK/index.json" >/dev/null 2>"$ERR"; then
    # One jq (common.sh JQ_READ): the status, and the index as it is (each value compact, as `jq -c .` prints it); an
    # index whose (last) value .status fails on (not an object) is unreadable, as jq 1.6 failed there.
    if fields=$(jq -rs "$JQ_READ"'select(length == 0 or (last | try ((.status // "none") | true) catch false))
      | (raw_lines(.status // "none") | assign("status")),
        ([.[] | tojson] | join("\n") | substituted | assign("last_seen"))' "$WORK/index.json" 2>"$ERR") &&
      [ -n "$fields" ]; then
      eval "$fields"
    else
      status="unreadable"
      last_seen="not JSON: $(head -c 200 "$WORK/index.json")"
    fi
    if [ "$status" = Succeeded ]; then
      log "the source run succeeded: $last_seen"
      exit 0
    fi
    log "the source run is $status; waiting (its Job may retry or resume)"
  elif grep -qE '\((ExpiredToken|InvalidToken)\)' "$ERR"; then
    # The projected IRSA token rotates; the next call gets fresh credentials. Not a permission problem.
    log "credentials expired reading $INDEX ($(last_error)); trying again"
  elif grep -qE '\((403|AccessDenied|Forbidden|InvalidAccessKeyId|SignatureDoesNotMatch)\)' "$ERR"; then
    echo "gate: access denied (403) reading $INDEX: this pod's IAM role cannot read the source run's index" \
      "(it needs s3:GetObject on it, and s3:ListBucket on $BUCKET, without which S3 answers 403 for a missing object too)" >&2
    exit 2
  elif grep -qE '\(NoSuchBucket\)' "$ERR"; then
    echo "gate: bucket $BUCKET does not exist, so the source run's index ($INDEX) never will: the source's" \
      "stack or bucket is gone; rerun the source, then bump this run's rerun" >&2
    exit 2
  elif grep -qE '\((404|NoSuchKey|NotFound)\)' "$ERR"; then
    log "no $INDEX yet; the source run has not finished"
  else
    log "cannot read $INDEX ($(last_error)); trying again"
  fi
  current=$(now)
  source_start=$(latest_attempt)
  if [ -n "$source_start" ] && [ "$current" -ge $((source_start + SOURCE_DEADLINE + GRACE_SECONDS)) ]; then
    warn "gave up: the source's latest pod started at $(date -u -d "@$source_start" +%Y-%m-%dT%H:%M:%SZ), and its" \
      "Job deadline (${SOURCE_DEADLINE} s) and ${GRACE_SECONDS} s more have passed without $INDEX saying Succeeded;" \
      "last seen: $last_seen"
    exit 1
  fi
  if [ "$current" -ge "$deadline" ]; then
    warn "gave up after ${DEADLINE_SECONDS} s waiting for $INDEX to say Succeeded; last seen: $last_seen"
    exit 1
  fi
  pause "$POLL_SECONDS"
done
