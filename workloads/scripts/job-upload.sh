#!/bin/bash
# output-uploader, a main container of a batch job pod beside the work container, which runs the user's command
# under job-entry.sh (AWS CLI v2 image: bash, coreutils, jq, findutils, aws; no curl, no python). It starts with
# the pod and exits by itself. With P = <SIMFLEET_PREFIX>shard-<JOB_COMPLETION_INDEX>/ in the artifacts bucket:
#
# 1. Records this attempt at <P>attempts/<utc>-<hostname>.json; the number of markers minus one is the number of
#    recoveries. If that fails, it carries on, with recoveries null and the failure at the end of index.json's
#    reason (the status stays the work container's). Stopping here would be worse: the marker only feeds a count,
#    while without index.json simfleet never learns that the shard ended, and its outputs would be lost too. (If
#    the bucket cannot be written at all, index.json fails as well, and this exits 1.)
# 2. Waits for job-entry.sh's done marker (at most SIMFLEET_DONE_WAIT_SECONDS). On SIGTERM it stops waiting and
#    gives the work container SIMFLEET_TERM_WAIT_SECONDS to write its marker.
# 3. When the work container Succeeded: uploads every regular file under SIMFLEET_OUTPUTS_DIR (recursively,
#    dotfiles too; not symlinks, nor anything that resolves outside it) to <P>outputs/<relative path>, tagged
#    $SIMFLEET_KIND_TAG=outputs. A failed upload is collected, not fatal. Other outcomes upload no outputs.
# 4. Writes <P>index.json LAST; its presence tells simfleet that this shard has ended:
#      {job, specHash, shard, status, reason, exitCode, startTime, completionTime, outputs, recoveries}
#    status is the marker's (Succeeded | Failed | Interrupted); Interrupted without a marker (after SIGTERM, or
#    after the wait); Failed when the marker is not a JSON object or has another status; Failed with reason
#    "upload failed: ..." when any upload failed. outputs is the number of files uploaded.
# 5. With SIMFLEET_PUSHGATEWAY_URL and SIMFLEET_METRICS_GROUP, after index.json: waits
#    SIMFLEET_METRICS_LINGER_SECONDS (not after SIGTERM) so Prometheus scrapes the final values, then deletes the
#    shard's group: DELETE <url>/metrics/<group> over bash's /dev/tcp (plain http:// only), the whole exchange
#    bounded by 10 s. A failure there is a warning; it changes neither index.json nor the exit code. This runs
#    after the attempt to write index.json even when that failed: stale metrics help nobody.
#
# Env: SIMFLEET_JOB, SIMFLEET_SPEC_HASH, SIMFLEET_PREFIX (jobs/<job>/<hash>/), JOB_COMPLETION_INDEX (a whole
# number), SIMFLEET_ARTIFACTS_BUCKET (these five required), SIMFLEET_SHARD_LIST (set on a Job for some shards only:
# the shard is the word at position JOB_COMPLETION_INDEX), SIMFLEET_OUTPUTS_DIR (/outputs), SIMFLEET_DONE_MARKER
# (/simfleet/.done), SIMFLEET_DONE_WAIT_SECONDS (604800), SIMFLEET_TERM_WAIT_SECONDS (60), SIMFLEET_KIND_TAG
# (simfleet-kind), SIMFLEET_PUSHGATEWAY_URL, SIMFLEET_METRICS_GROUP (default job/<job>/shard/<shard>),
# SIMFLEET_METRICS_LINGER_SECONDS (30), AWS_REGION.
# Exit: 0 only when index.json says Succeeded; 1 otherwise, or when index.json could not be written; 2 at once,
# before anything else, when the settings above are malformed (no shard to write an index.json for).
#
# Not `set -e`: one failed upload must not stop the others, and index.json must be written whatever else
# happened. Every command whose failure matters is checked where it runs.
set -uo pipefail
NAME=output-uploader
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# From the first moment: a SIGTERM while the attempt is recorded still ends the wait below at once.
terminated=0
trap 'terminated=1' TERM

OUTPUTS_DIR=${SIMFLEET_OUTPUTS_DIR:-/outputs}
MARKER=${SIMFLEET_DONE_MARKER:-/simfleet/.done}
DONE_WAIT=${SIMFLEET_DONE_WAIT_SECONDS:-604800}
TERM_WAIT=${SIMFLEET_TERM_WAIT_SECONDS:-60}
KIND_TAG=${SIMFLEET_KIND_TAG:-simfleet-kind}
PUSHGATEWAY_URL=${SIMFLEET_PUSHGATEWAY_URL:-}
METRICS_GROUP=${SIMFLEET_METRICS_GROUP:-}
LINGER=${SIMFLEET_METRICS_LINGER_SECONDS:-30}
PUSH_TIMEOUT=10 # seconds for the whole DELETE exchange, connect included
require_whole_seconds SIMFLEET_DONE_WAIT_SECONDS "$DONE_WAIT" SIMFLEET_TERM_WAIT_SECONDS "$TERM_WAIT" \
  SIMFLEET_METRICS_LINGER_SECONDS "$LINGER" || exit 2
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
trap 'rm -rf "$WORK"' EXIT
ERR="$WORK/err"

# 1. The attempt marker, and how many pods of this shard came before.
notes=()
recoveries=null
if record_attempt "$SIMFLEET_ARTIFACTS_BUCKET" "${P}attempts/" job "$SIMFLEET_JOB"; then
  log "attempt $((recoveries + 1)) of shard $SHARD of ${SIMFLEET_JOB} ($P)"
else
  notes+=("$attempt_error")
  warn "$attempt_error; carrying on without the count of recoveries"
fi

# 2. Wait for the work container; SIGTERM ends the wait.
log "waiting for the done marker $MARKER (up to ${DONE_WAIT} s)"
deadline=$(($(now) + DONE_WAIT))
while [ ! -f "$MARKER" ] && [ "$terminated" = 0 ] && [ "$(now)" -lt "$deadline" ]; do
  pause 1
done
grace_after_term "$MARKER" "$terminated" "$TERM_WAIT" "the work container" "write its done marker"

# What the work container says happened.
read_done_marker "$MARKER" "the work container" "the done marker" "$terminated" "$TERM_WAIT" "$DONE_WAIT"
log "the work container ended: $status${reason:+ ($reason)}"

# 3. Outputs, tagged `outputs`, from a Succeeded shard only: the role may delete nothing, so partial files an
# interrupted or failed attempt uploaded would stay beside the final attempt's, and a SIGTERM's grace goes to
# index.json instead. find -type f: regular files only, dotfiles included, symlinks neither followed nor
# uploaded (and upload_tagged uploads only what lies under the outputs directory once opened).
failures=()
uploaded=0
if [ "$status" != Succeeded ]; then
  log "not uploading outputs of a $status shard (only a Succeeded attempt's outputs go up)"
elif [ -d "$OUTPUTS_DIR" ]; then
  while IFS= read -r -d '' file; do
    relative=${file#"$OUTPUTS_DIR/"}
    if upload_tagged "$file" "$OUTPUTS_DIR" "$SIMFLEET_ARTIFACTS_BUCKET" "${P}outputs/${relative}" "$KIND_TAG" outputs; then
      uploaded=$((uploaded + 1))
    else
      failures+=("outputs/$relative: $(last_error)")
    fi
  done < <(find "$OUTPUTS_DIR" -type f -print0 2>"$WORK/find.err" | sort -z)
  # A directory find could not read holds outputs that did not go up.
  [ ! -s "$WORK/find.err" ] || failures+=("$(grep -v '^[[:space:]]*$' "$WORK/find.err" | tail -n 1)")
  log "uploaded $uploaded outputs to s3://$SIMFLEET_ARTIFACTS_BUCKET/${P}outputs/"
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
fi
if [ ${#notes[@]} -gt 0 ]; then
  note=$(printf '%s; ' "${notes[@]}")
  reason="${reason:+$reason; }${note%; }"
fi

# 4. index.json, last.
index_written=1
if ! jq -n \
  --arg job "$SIMFLEET_JOB" --arg hash "$SIMFLEET_SPEC_HASH" --argjson shard "$SHARD" --arg status "$status" \
  --arg reason "$reason" --argjson exitCode "$exit_code" --arg started "${started:-}" \
  --arg completed "$(utc_now)" --argjson outputs "$uploaded" --argjson recoveries "$recoveries" \
  'def null_if_empty: if . == "" then null else . end;
   {job: $job, specHash: $hash, shard: $shard, status: $status, reason: ($reason | null_if_empty),
    exitCode: $exitCode, startTime: ($started | null_if_empty), completionTime: $completed, outputs: $outputs,
    recoveries: $recoveries}' >"$WORK/index.json"; then
  warn "could not build index.json"
  index_written=0
elif ! put_json "$SIMFLEET_ARTIFACTS_BUCKET" "${P}index.json" "$WORK/index.json"; then
  warn "could not write s3://$SIMFLEET_ARTIFACTS_BUCKET/${P}index.json: $(last_error)"
  index_written=0
else
  log "$status: s3://$SIMFLEET_ARTIFACTS_BUCKET/${P}index.json"
fi

# 5. The shard's Pushgateway group. The Pushgateway keeps a group until it is deleted (it has no TTL), so a
# finished shard's last values would be scraped for ever; first they get a scrape interval or two.
# pushgateway_delete URL GROUP: returns 1 with a warning when the group may still be there.
pushgateway_delete() {
  local url=$1 group=$2 rest authority host port path answer
  case $url in
    http://*) ;;
    https://*)
      warn "not deleting the Pushgateway group: $url is https, and the in-cluster Pushgateway speaks plain HTTP"
      return 1
      ;;
    *)
      warn "not deleting the Pushgateway group: SIMFLEET_PUSHGATEWAY_URL is not an http:// URL: '$url'"
      return 1
      ;;
  esac
  rest=${url#http://}
  authority=${rest%%/*}
  path=${rest#"$authority"}
  path="${path%/}/metrics/$group"
  host=${authority%%:*}
  port=80
  [[ $authority != *:* ]] || port=${authority#*:}
  # One label value per path segment, as Pushgateway's grouping key has them (@base64 values included); this also
  # keeps the request line free of spaces and line breaks.
  if ! [[ $host =~ ^[A-Za-z0-9.-]+$ && $port =~ ^[0-9]+$ && $group =~ ^job(@base64)?/[A-Za-z0-9._~@=%+-]+(/[A-Za-z0-9._~@=%+-]+)*$ ]]; then
    warn "not deleting the Pushgateway group: cannot use URL '$url' with group '$group'"
    return 1
  fi
  # timeout bounds the connect as well as the answer; the status line is all that is read.
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  answer=$(timeout "$PUSH_TIMEOUT" bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "DELETE %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3" "$4" >&3 || exit 1
    IFS= read -r line <&3 || exit 1
    printf "%s" "$line"
  ' _ "$host" "$port" "$path" "$authority" 2>"$ERR")
  case $? in
    0) answer=${answer%$'\r'} ;;
    124)
      warn "could not delete the Pushgateway group at $url$path: no answer within ${PUSH_TIMEOUT} s"
      return 1
      ;;
    *)
      answer=$(last_error)
      warn "could not delete the Pushgateway group at $url$path: ${answer:-no connection, or no answer}"
      return 1
      ;;
  esac
  if ! [[ $answer =~ ^HTTP/1\.[01]\ 2[0-9][0-9] ]]; then
    warn "could not delete the Pushgateway group at $url$path: it answered '$answer'"
    return 1
  fi
  log "deleted the Pushgateway group $group ($answer)"
}
if [ -n "$PUSHGATEWAY_URL" ] && [ -n "$METRICS_GROUP" ]; then
  if [ "$terminated" = 0 ] && [ "$LINGER" -gt 0 ]; then
    log "keeping the Pushgateway group $METRICS_GROUP for ${LINGER} s, for a last scrape"
    linger_deadline=$(($(now) + LINGER))
    while [ "$terminated" = 0 ] && [ "$(now)" -lt "$linger_deadline" ]; do
      pause 1
    done
  fi
  pushgateway_delete "$PUSHGATEWAY_URL" "$METRICS_GROUP" || true
fi

# 6. The pod's result matches index.json (and is a failure when there is no index.json).
[ "$index_written" = 1 ] && [ "$status" = Succeeded ]
