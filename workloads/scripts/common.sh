# shellcheck shell=bash
# Helpers shared by the pod scripts that run in the AWS CLI v2 image (fetch.sh, upload.sh, gate.sh,
# job-upload.sh). Sourced, never run: it defines functions and one constant, and sets no options or traps
# (every sourcing script runs with `set -o pipefail`).
# job-entry.sh does not use it: that one is POSIX sh and runs in the user's image.
#
# The sourcing script sets, before calling any of these:
#   NAME  its container's name, the prefix of every message;
#   ERR   the file each aws call's stderr goes to (last_error reads it);
#   WORK  a private scratch directory (record_attempt writes there).

log() { echo "$NAME: $*"; }
warn() { echo "$NAME: $*" >&2; }

# The last non-blank line of the last aws call's stderr ($ERR); empty, never a failure, when there is none
# (safe under `set -e` in `x=$(last_error)`).
last_error() { grep -v '^[[:space:]]*$' "$ERR" 2>/dev/null | tail -n 1 || true; }

now() { date +%s; }
utc_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# Sleeps $1 seconds in the background: `wait` returns as soon as a trapped signal arrives, where a foreground
# sleep would hold the trap back until it ends. The sleep is then ended too, so that no stray process keeps the
# container's stdout open. Always returns 0.
pause() {
  sleep "$1" &
  local pid=$!
  wait "$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
}

# require_whole_seconds NAME VALUE [NAME VALUE]...: returns 1, naming the first setting that is not a whole
# number of seconds, so the caller can `|| exit 2`.
require_whole_seconds() {
  while [ $# -ge 2 ]; do
    if ! [[ $2 =~ ^[0-9]+$ ]]; then
      warn "$1 must be whole seconds, not '$2'"
      return 1
    fi
    shift 2
  done
}

# put_json BUCKET KEY FILE: one PUT with Content-Type application/json; stderr to $ERR.
put_json() {
  aws s3api put-object --bucket "$1" --key "$2" --body "$3" --content-type application/json >/dev/null 2>"$ERR"
}

# record_attempt BUCKET ATTEMPTS_PREFIX FIELD VALUE: the attempt marker
#   <ATTEMPTS_PREFIX><utc %Y%m%dT%H%M%SZ>-<hostname>.json = {<FIELD>: VALUE, pod, startTime}
# in BUCKET; every pod of a seed or shard writes one, so the number of markers minus one is the number of
# recoveries (spot reclaims, drains, retries). Sets `started` (UTC, ISO 8601) first, whatever happens, then
# `recoveries`; returns 1 with `attempt_error` saying what failed.
# shellcheck disable=SC2034 # started, recoveries and attempt_error are the sourcing script's to read
record_attempt() {
  local bucket=$1 attempts=$2 field=$3 value=$4 pod=${HOSTNAME:-$(uname -n)} key count
  started=$(utc_now)
  key="${attempts}$(date -u +%Y%m%dT%H%M%SZ)-${pod}.json"
  jq -n --arg field "$field" --arg value "$value" --arg start "$started" --arg pod "$pod" \
    '{($field): $value, pod: $pod, startTime: $start}' >"$WORK/attempt.json"
  if ! put_json "$bucket" "$key" "$WORK/attempt.json"; then
    attempt_error="cannot record this attempt at s3://$bucket/$key: $(last_error)"
    return 1
  fi
  if ! count=$(aws s3api list-objects-v2 --bucket "$bucket" --prefix "$attempts" --output json 2>"$ERR" |
    jq '[.Contents[]?] | length'); then
    attempt_error="cannot list s3://$bucket/$attempts: $(last_error)"
    return 1
  fi
  recoveries=$((count > 0 ? count - 1 : 0))
}

# grace_after_term MARKER TERMINATED TERM_WAIT WHO TASK: after a SIGTERM that came before MARKER, give WHO (the main
# container writing it) up to TERM_WAIT more seconds to do TASK; returns at once otherwise.
grace_after_term() {
  local marker=$1 terminated=$2 term_wait=$3 who=$4 task=$5 term_deadline
  if [ "$terminated" = 1 ] && [ ! -f "$marker" ]; then
    log "SIGTERM: giving $who up to ${term_wait} s to $task"
    term_deadline=$(($(now) + term_wait))
    while [ ! -f "$marker" ] && [ "$(now)" -lt "$term_deadline" ]; do
      pause 1
    done
  fi
}

# read_done_marker MARKER WRITER OWNED TERMINATED TERM_WAIT DONE_WAIT: what the main container said happened, from
# its done marker, as `status` (Succeeded | Failed | Interrupted), `reason` and `exit_code` (a JSON number or null).
# WRITER names that container ("glue"), OWNED its marker in messages ("glue's done marker"); with no marker, the run
# was Interrupted: after a SIGTERM (TERMINATED=1) or after the whole wait.
# shellcheck disable=SC2034 # status, reason and exit_code are the sourcing script's to read
read_done_marker() {
  local marker=$1 writer=$2 owned=$3 terminated=$4 term_wait=$5 done_wait=$6
  exit_code=null
  reason=""
  if [ -f "$marker" ] && jq -e 'type == "object"' "$marker" >/dev/null 2>&1; then
    status=$(jq -r '.status' "$marker")
    reason=$(jq -r '.reason // ""' "$marker")
    exit_code=$(jq 'if (.exitCode | type) == "number" then .exitCode else null end' "$marker")
    case $status in
      Succeeded | Failed | Interrupted) ;;
      *)
        reason="$owned has status '$status'"
        status=Failed
        ;;
    esac
  elif [ -f "$marker" ]; then
    status=Failed
    reason="$owned is not a JSON object: $(head -c 200 "$marker")"
  elif [ "$terminated" = 1 ]; then
    status=Interrupted
    reason="terminated before $writer wrote its done marker (waited ${term_wait} s after SIGTERM)"
  else
    status=Interrupted
    reason="$writer wrote no done marker within ${done_wait} s"
  fi
}

# SINGLE_PUT_LIMIT: S3's single PUT takes up to 5 GB; bigger files go up in parts (aws s3 cp).
SINGLE_PUT_LIMIT=5000000000
# upload_tagged FILE ROOT BUCKET KEY TAG_KEY TAG_VALUE: uploads FILE tagged TAG_KEY=TAG_VALUE (the buckets'
# lifecycle rules expire objects by that tag); stderr to $ERR.
# FILE is opened once, and only what that open reached is uploaded, and only if it lies under ROOT: the
# directories are written by other containers of the pod (the user's code), and a symlink there, or one swapped
# in after the listing, must not make this container, the only one with AWS credentials, upload a file of its
# own (its IRSA token, say).
upload_tagged() {
  local file=$1 root body resolved fd status=0
  root=$(readlink -f "$2") || return 1
  if ! exec {fd}<"$file"; then
    echo "cannot open $file" >"$ERR"
    return 1
  fi
  body="/dev/fd/$fd"
  resolved=$(readlink -f "/proc/self/fd/$fd")
  case $resolved in
    "$root"/*) ;;
    *)
      echo "refusing $file: it resolves to $resolved, outside $root" >"$ERR"
      exec {fd}<&-
      return 1
      ;;
  esac
  if [ "$(stat -L -c %s "$body")" -lt "$SINGLE_PUT_LIMIT" ]; then
    # `aws s3 cp` cannot tag (aws/aws-cli#2458); put-object tags in the same request.
    aws s3api put-object --bucket "$3" --key "$4" --body "$body" --tagging "$5=$6" >/dev/null 2>"$ERR" || status=$?
  else
    { aws s3 cp --only-show-errors "$body" "s3://$3/$4" 2>"$ERR" &&
      aws s3api put-object-tagging --bucket "$3" --key "$4" --tagging "TagSet=[{Key=$5,Value=$6}]" 2>"$ERR"; } ||
      status=$?
  fi
  exec {fd}<&-
  return "$status"
}
