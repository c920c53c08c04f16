#!/bin/bash
# checkpoint-fetch, the run pod's init container (AWS CLI v2 image: bash, coreutils, jq, findutils, aws).
#
# 1. Records this attempt: s3://<artifacts>/<P>attempts/<utc>-<hostname>.json. Every pod of the seed writes
#    one, so the number of markers minus one is the number of recoveries (spot reclaims, drains, retries). The write
#    and the count retry beyond the CLI's own retries; if they still fail it carries on, as job-upload.sh does, with
#    recoveries null and the failure noted (index.json's reason ends with it): the count is not worth a lost run.
# 2. Puts the brain the run starts from at <checkpoints>/in.mstate:
#    - SIMFLEET_RESUME=true and a partial checkpoint of this seed exists: resume from it (partial.json becomes
#      <checkpoints>/resume.json, which tells glue how much simulation time is already done; S3 errors other than
#      missing or denied are retried for SIMFLEET_RETRY_SECONDS, and a partial.json that still cannot be read fails
#      the pod rather than run the resumed brain for the whole time);
#    - else SIMFLEET_CHECKPOINT_FROM (s3://...): after SIMFLEET_SOURCE_INDEX, when set, says the source run
#      Succeeded; transient failures are retried for SIMFLEET_FETCH_WAIT_SECONDS;
#    - else nothing: Monty starts a fresh brain.
# 3. Writes <checkpoints>/.started: {"startTime", "recoveries", "resumedFrom", "notes"} (atomically).
#
# Env: SIMFLEET_RUN, SIMFLEET_SEEDS (JSON list), SIMFLEET_PER_SEED (true: the seed is
# SIMFLEET_SEEDS[JOB_COMPLETION_INDEX] and keys get seed-<n>/), SIMFLEET_PREFIX (runs/<run>/<hash>/),
# SIMFLEET_ARTIFACTS_BUCKET, SIMFLEET_CHECKPOINTS_BUCKET, SIMFLEET_RESUME, SIMFLEET_CHECKPOINT_FROM,
# SIMFLEET_SOURCE_INDEX, SIMFLEET_FETCH_WAIT_SECONDS (120), SIMFLEET_FETCH_POLL_SECONDS (30), SIMFLEET_RETRY_SECONDS (60),
# SIMFLEET_CHECKPOINTS_DIR (/checkpoints), AWS_REGION.
# Exit: 0, or 1 with a one-line reason on stderr; 143 after a SIGTERM ("checkpoint-fetch: terminated").
set -euo pipefail
NAME=checkpoint-fetch
# shellcheck source=common.sh
source "${BASH_SOURCE[0]%/*}/common.sh" # (no $(...) before guard_term: see common.sh's first lines)

fail() {
  warn "$*"
  exit 1
}
# PID 1 of its container, to which the kernel drops an untrapped TERM and the pod would wait out its grace period: the
# guardian (term.sh guard_term) holds the trap and ends this script, and what it started, with SIGTERM (exit 143).
guard_term stop "$@"

CHECKPOINTS_DIR=${SIMFLEET_CHECKPOINTS_DIR:-/checkpoints}
WAIT_SECONDS=${SIMFLEET_FETCH_WAIT_SECONDS:-120}
POLL_SECONDS=${SIMFLEET_FETCH_POLL_SECONDS:-30}
require_whole_seconds SIMFLEET_FETCH_WAIT_SECONDS "$WAIT_SECONDS" SIMFLEET_FETCH_POLL_SECONDS "$POLL_SECONDS" || exit 1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ERR="$WORK/err"

# The seed and the key prefix P of this pod.
if [ "${SIMFLEET_PER_SEED:-false}" = true ]; then
  [[ ${JOB_COMPLETION_INDEX:-} =~ ^[0-9]+$ ]] || fail "SIMFLEET_PER_SEED is true but JOB_COMPLETION_INDEX is '${JOB_COMPLETION_INDEX:-}'"
  seed=$(jq -er ".[$JOB_COMPLETION_INDEX]" <<<"$SIMFLEET_SEEDS") || fail "no seed at index $JOB_COMPLETION_INDEX of $SIMFLEET_SEEDS"
  P="${SIMFLEET_PREFIX}seed-${seed}/"
else
  P=$SIMFLEET_PREFIX
fi

# What the last aws call's stderr ($ERR) says went wrong: denied, missing or other.
s3_error() {
  if grep -qE '\((403|AccessDenied|Forbidden|InvalidAccessKeyId|SignatureDoesNotMatch|ExpiredToken|InvalidToken)\)' "$ERR"; then
    echo denied
  elif grep -qE '\((404|NoSuchKey|NoSuchBucket|NotFound)\)' "$ERR"; then
    echo missing
  else
    echo other
  fi
}
head_object() { aws s3api head-object --bucket "$1" --key "$2" >/dev/null 2>"$ERR"; }
download() { aws s3 cp --only-show-errors "$1" "$2" 2>"$ERR"; }
bucket_of() {
  local rest=${1#s3://}
  echo "${rest%%/*}"
}
key_of() {
  local rest=${1#s3://}
  echo "${rest#*/}"
}
# s3_retrying CMD...: CMD (an aws call, stderr to $ERR) again after 1, 2, 4, 8, 8... seconds while S3 answers anything
# but missing or denied (throttling, a 500, a dropped connection), for SIMFLEET_RETRY_SECONDS (60) beyond the CLI's own
# retries; returns CMD's last status, $ERR holding its error. A missing or denied object is an answer: no retry.
s3_retrying() {
  local deadline=$((EPOCHSECONDS + ${SIMFLEET_RETRY_SECONDS:-60})) delay=1
  until "$@"; do
    case $(s3_error) in missing | denied) return 1 ;; esac
    [ $((EPOCHSECONDS + delay)) -le "$deadline" ] || return 1
    log "$(last_error); trying again in ${delay} s"
    pause "$delay"
    delay=$((delay < 8 ? delay * 2 : 8))
  done
}
denied_message() {
  echo "access denied (403) reading $1: the run's IAM role cannot read it (it needs s3:GetObject on the object," \
    "and s3:ListBucket on the bucket, without which S3 answers 403 for a missing object too)"
}

# 1. The attempt marker, and how many pods of this seed came before.
notes=()
if record_attempt "$SIMFLEET_ARTIFACTS_BUCKET" "${P}attempts/" run "$SIMFLEET_RUN"; then
  log "attempt $((recoveries + 1)) of ${SIMFLEET_RUN} (${P})"
else
  notes+=("$attempt_error")
  warn "$attempt_error; carrying on without the count of recoveries"
fi

# 2. The brain to start from.
resumed_from=""
if [ "${SIMFLEET_RESUME:-false}" = true ]; then
  partial="s3://$SIMFLEET_CHECKPOINTS_BUCKET/${P}partial.mstate"
  if s3_retrying head_object "$SIMFLEET_CHECKPOINTS_BUCKET" "${P}partial.mstate"; then
    # partial.json first: the upload ships it after the checkpoint, so this order never pairs a record with an
    # older checkpoint than the one it describes (at worst an older record, and a little time run twice). Only a
    # partial.json that is not there lets glue run the whole time again (noted in index.json): one S3 could not hand
    # over (throttled, a 500) fails the pod, which the Job retries, rather than run the resumed brain for all of it.
    record="s3://$SIMFLEET_CHECKPOINTS_BUCKET/${P}partial.json"
    if s3_retrying download "$record" "$WORK/resume.json"; then
      mv -f "$WORK/resume.json" "$CHECKPOINTS_DIR/resume.json"
    elif [ "$(s3_error)" = missing ]; then
      notes+=("resumed from $partial without its record $record: the whole simulation time ran again on top of it")
      log "no partial.json beside $partial; glue runs the whole simulation time again"
    else
      fail "cannot read $record: $(last_error)"
    fi
    s3_retrying download "$partial" "$CHECKPOINTS_DIR/in.mstate" || fail "cannot download $partial: $(last_error)"
    resumed_from=$partial
    log "resuming from $partial ($(jq -c . "$CHECKPOINTS_DIR/resume.json" 2>/dev/null || echo 'no resume record'))"
  else
    case $(s3_error) in
      missing) log "no partial checkpoint of this seed to resume from" ;;
      denied) fail "$(denied_message "$partial")" ;;
      *) fail "cannot look for $partial: $(last_error)" ;;
    esac
  fi
fi

if [ -z "$resumed_from" ] && [ -n "${SIMFLEET_CHECKPOINT_FROM:-}" ]; then
  source_uri=$SIMFLEET_CHECKPOINT_FROM
  if [ -n "${SIMFLEET_SOURCE_INDEX:-}" ]; then
    index=$SIMFLEET_SOURCE_INDEX
    if ! aws s3api get-object --bucket "$(bucket_of "$index")" --key "$(key_of "$index")" "$WORK/source-index.json" \
      >/dev/null 2>"$ERR"; then
      case $(s3_error) in
        missing) fail "the source run has not finished: $index does not exist" ;;
        denied) fail "$(denied_message "$index")" ;;
        *) fail "cannot read the source run's index $index: $(last_error)" ;;
      esac
    fi
    status=$(jq -r '.status // "none"' "$WORK/source-index.json" 2>/dev/null) ||
      fail "the source run's index $index is not JSON: $(head -c 200 "$WORK/source-index.json")"
    [ "$status" = Succeeded ] || fail "the source run did not succeed: $index says $(jq -c . "$WORK/source-index.json")"
  fi
  deadline=$(($(now) + WAIT_SECONDS))
  until aws s3 cp --only-show-errors "$source_uri" "$CHECKPOINTS_DIR/in.mstate" 2>"$ERR"; do
    case $(s3_error) in
      denied) fail "$(denied_message "$source_uri")" ;;
      missing) why="it does not exist" ;;
      *) why=$(last_error) ;;
    esac
    [ "$(now)" -lt "$deadline" ] || fail "gave up on $source_uri after ${WAIT_SECONDS} s: $why"
    log "cannot fetch $source_uri yet ($why); trying again in ${POLL_SECONDS} s"
    pause "$POLL_SECONDS"
  done
  log "fetched $source_uri"
elif [ -z "$resumed_from" ]; then
  log "no checkpoint.from: Monty starts with a fresh brain"
fi

# 3. What the uploader puts in index.json.
printf '%s\0' "${notes[@]}" | jq -Rs --arg start "$started" --argjson recoveries "$recoveries" --arg resumed "$resumed_from" \
  '{startTime: $start, recoveries: $recoveries, resumedFrom: (if $resumed == "" then null else $resumed end),
    notes: (split("\u0000") | map(select(. != "")))}' >"$CHECKPOINTS_DIR/.started.tmp"
mv -f "$CHECKPOINTS_DIR/.started.tmp" "$CHECKPOINTS_DIR/.started"
