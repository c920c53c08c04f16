# shellcheck shell=bash
# Helpers shared by the pod scripts that run in the AWS CLI v2 image (fetch.sh, upload.sh, gate.sh,
# job-upload.sh). Sourced, never run: it defines functions and constants and exports the AWS CLI's retry settings; it
# sets no options (every sourcing script runs with `set -o pipefail`). Its SIGTERM handling is term.sh's, which it
# sources: the one trap there is guard_term's. job-entry.sh uses neither: that one is POSIX sh and runs in the user's
# image.
#
# The sourcing script sets, before calling any of these:
#   NAME  its container's name, the prefix of every message;
#   ERR   the file each aws call's stderr goes to (last_error reads it);
#   WORK  a private scratch directory (record_attempt and ship_tree write there).
# and may set HARD_DEADLINE and on_term (term.sh).

# A SIGTERM before guard_term sets its trap (while bash starts and reads this file) must not be lost: to PID 1 of a
# container, whose SIGTERM is untrapped then, the kernel does not deliver it at all (a signal at its default action is
# dropped for a PID namespace's init), and the kubelet sends it once. So its second is noted from here on, for the
# guardian to act on (guard_term); the worker (SIMFLEET_TERM_GUARD names its guardian) keeps SIGTERM's default, which
# stop mode relies on. The sourcing scripts find this file without a $(...) for the same reason.
term_at=""
[ -n "${SIMFLEET_TERM_GUARD:-}" ] || trap 'term_at=${term_at:-$EPOCHSECONDS}' TERM

# The CLI's own retries, set explicitly: v1 defaults to its legacy mode with 5 attempts, v2 to standard mode with 3,
# and the pods run v2. Standard mode retries throttling (SlowDown, 503) and transient errors with jittered backoff;
# the writes that must not be lost (index.json, checkpoints, their promotion) retry again beyond this (retry_until).
export AWS_RETRY_MODE=${AWS_RETRY_MODE:-standard}
export AWS_MAX_ATTEMPTS=${AWS_MAX_ATTEMPTS:-5}

log() { echo "$NAME: $*"; }
warn() { echo "$NAME: $*" >&2; }

# The last non-blank line of the last aws call's stderr ($ERR); empty, never a failure, when there is none
# (safe under `set -e` in `x=$(last_error)`).
last_error() { grep -v '^[[:space:]]*$' "$ERR" 2>/dev/null | tail -n 1 || true; }

# Epoch seconds without a fork (bash 5's EPOCHSECONDS): the wait loops call these every second.
now() { printf '%s\n' "$EPOCHSECONDS"; }
utc_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# SIGTERM (guard_term, term_poll) and the waits it ends or a deadline bounds (pause, await, run_bounded, retry_until).
# shellcheck source=term.sh
source "${BASH_SOURCE[0]%/*}/term.sh" # (no $(...): see the first lines above)

# require_whole_seconds NAME VALUE [NAME VALUE]...: returns 1, naming the first setting that is not a whole
# number of seconds, so the caller can `|| exit 2`.
# require_seconds NAME VALUE: the same for a poll interval, which may have a fraction (0.2).
require_seconds() {
  if ! [[ $2 =~ ^[0-9]+(\.[0-9]+)?$ ]] || [[ $2 =~ ^0*\.?0*$ ]]; then
    warn "$1 must be a number of seconds above 0, not '$2'"
    return 1
  fi
}
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

# list_count BUCKET PREFIX: prints how many objects are under PREFIX; stderr to $ERR.
list_count() {
  aws s3api list-objects-v2 --bucket "$1" --prefix "$2" --output json 2>"$ERR" | jq '[.Contents[]?] | length'
}

# record_attempt BUCKET ATTEMPTS_PREFIX FIELD VALUE: the attempt marker
#   <ATTEMPTS_PREFIX><utc %Y%m%dT%H%M%SZ>-<hostname>.json = {<FIELD>: VALUE, pod, startTime}
# in BUCKET; every pod of a seed or shard writes one, so the number of markers minus one is the number of
# recoveries (spot reclaims, drains, retries). Sets `started` (UTC, ISO 8601) and `attempt` (the marker's name without
# .json) first, whatever happens, then `recoveries`. The write and the listing each retry for SIMFLEET_RETRY_SECONDS (60);
# when either still fails it returns 1 with `attempt_error` saying what failed and `recoveries` null: the callers
# (fetch.sh and job-upload.sh alike) carry on, since the count only feeds index.json.
# shellcheck disable=SC2034 # started, attempt, recoveries and attempt_error are the sourcing script's to read
record_attempt() {
  local bucket=$1 attempts=$2 field=$3 value=$4 pod=${HOSTNAME:-$(uname -n)} key count
  started=$(utc_now)
  attempt="$(date -u +%Y%m%dT%H%M%SZ)-${pod}"
  key="${attempts}${attempt}.json"
  recoveries=null
  jq -n --arg field "$field" --arg value "$value" --arg start "$started" --arg pod "$pod" \
    '{($field): $value, pod: $pod, startTime: $start}' >"$WORK/attempt.json"
  if ! retry_until $((EPOCHSECONDS + ${SIMFLEET_RETRY_SECONDS:-60})) put_json "$bucket" "$key" "$WORK/attempt.json"; then
    attempt_error="cannot record this attempt at s3://$bucket/$key: $(last_error)"
    return 1
  fi
  if ! count=$(retry_until $((EPOCHSECONDS + ${SIMFLEET_RETRY_SECONDS:-60})) list_count "$bucket" "$attempts"); then
    attempt_error="cannot list s3://$bucket/$attempts to count this seed's recoveries: $(last_error)"
    return 1
  fi
  recoveries=$((count > 0 ? count - 1 : 0))
}

# --- Reading JSON files with one jq --------------------------------------------------------------------------------
# Each jq start costs ~20 ms of CPU (jq 1.6 compiles its builtins), and the uploaders read several fields of a file
# every second or at the end: one `jq -rs "$JQ_READ"'PROGRAM' FILE` reads them all, and PROGRAM prints shell
# assignments (assign) that the caller evals. -s reads the whole file at once: a file that does not parse, or is
# empty, gives no value (and whatever it holds, nothing but assignments is printed). What a field reads is exactly
# what its own `$(jq -r F FILE 2>/dev/null)` read, for a file of any number of values, with two differences: a file
# of complete values followed by a cut-off one gives none (the separate reads took the complete ones; where their exit
# status was checked, the marker's and the heartbeat's, the file was unreadable already), and an empty file (or only
# spaces) is not an object: as `jq -e` judges it from jq 1.7 on (src/main.c: no output, exit 4), where 1.6, Debian 12's
# that the tests run, exited 0 and the scripts read the file's fields as empty. (Done markers are read as one object or
# none: read_done_marker.) Values read here that go into index.json reach its jq through files, not arguments: the
# user's code can make them longer than Linux lets one argument be (128 KiB), and jq would not start.
#   text           what `jq -r` prints for a value: a string as it is, anything else as JSON, pretty-printed as jq prints it
#                  (pretty, checked against jq's own printer in tests/test_script_json.py);
#   substituted    as a $(...) gives it: without NULs (jq 1.6's @sh would also write each as the two characters \0), and
#                  without trailing newlines;
#   raw_lines(F)   F's text for every value of the file (of the array -s made), one a line, a value on which F fails
#                  skipped, as jq skips it and goes on; json_lines(F) the same, as `jq F` prints it;
#   assign($name)  the string as `name='...'`, quoted by jq's @sh (newlines and quotes included).
# shellcheck disable=SC2016 # jq's $variables, not the shell's
JQ_READ='
def pretty($in):
  if type == "array" and length > 0 then
    "[\n" + (map($in + "  " + pretty($in + "  ")) | join(",\n")) + "\n" + $in + "]"
  elif type == "object" and length > 0 then
    "{\n" + ([keys_unsorted[] as $k | $in + "  " + ($k | tojson) + ": " + (.[$k] | pretty($in + "  "))] | join(",\n"))
      + "\n" + $in + "}"
  else tojson end;
def text: if type == "string" then . else pretty("") end;
def substituted: split("\u0000") | join("") | until(endswith("\n") | not; .[:-1]);
def raw_lines(f): [.[] | try (f | text)] | join("\n") | substituted;
def json_lines(f): [.[] | try (f | pretty(""))] | join("\n") | substituted;
def assign($name): "\($name)=\(@sh)";
'

# read_done_marker FILE OWNED [INCARNATION]: what a done marker says, as `status` (Succeeded | Failed | Interrupted |
# Incomplete), `reason`, `exit_code` (a JSON number or null), and for upload.sh `marker_steps` (its steps, as JSON) and
# `checkpoint_saved` (its checkpointSaved, as text), from one read of the file. OWNED names the marker in messages
# ("glue's done marker"); a marker that is not one JSON object, or has another status, makes the status Failed. One:
# its writer writes it whole, once, and a file of several values (even if the last is an object, which `jq -e` took
# for one) would read each field over all of them, an exit code "0<newline>0" that index.json's jq refuses. With
# INCARNATION, a marker that is not one object whose .incarnation is that string is not the writer's: it returns 1
# and sets nothing.
# shellcheck disable=SC2034 # status, reason, exit_code, marker_steps and checkpoint_saved are the sourcing script's to read
read_done_marker() {
  local marker=$1 owned=$2 incarnation=${3:-} fields marker_is=""
  fields=$(jq -rs --arg i "$incarnation" "$JQ_READ"'
    if $i != "" and (length != 1 or (.[0] | try (.incarnation != $i) catch true)) then "marker_is=foreign"
    elif length == 1 and (.[0] | type) == "object" then
      "marker_is=object",
      (raw_lines(.status) | assign("status")),
      (raw_lines(.reason // "") | assign("reason")),
      (json_lines(if (.exitCode | type) == "number" then .exitCode else null end) | assign("exit_code")),
      (json_lines(.steps // null) | assign("marker_steps")),
      (raw_lines(.checkpointSaved) | assign("checkpoint_saved"))
    else empty end' "$marker" 2>/dev/null)
  case $fields in
    marker_is=foreign | "") [ -z "$incarnation" ] || return 1 ;;
    *) eval "$fields" ;;
  esac
  if [ "$marker_is" = object ]; then
    case $status in
      Succeeded | Failed | Interrupted | Incomplete) ;;
      *)
        reason="$owned has status '$status'"
        status=Failed
        ;;
    esac
  else
    status=Failed exit_code=null marker_steps=null checkpoint_saved=""
    reason="$owned is not a JSON object: $(head -c 200 "$marker")"
  fi
  return 0 # (not head's status, for a marker that is missing)
}

# open_regular FILE ROOT: opens FILE for reading as `opened_fd` if it is a regular file at its own path under ROOT;
# else returns 1 with `refusal` saying why. The directories are written by other containers of the pod (the user's
# code), and a symlink there, or one swapped in after a listing (of the file or of a directory on its way), must not
# make this container, the only one with AWS credentials, upload a file of its own (its IRSA token, say): so the
# check is made on the file the open reached (/proc/self/fd), and the upload reads that open file, never the path.
# shellcheck disable=SC2034 # opened_fd and refusal are the caller's to read
open_regular() {
  local file=$1 root expected resolved fd pid=$BASHPID
  root=$(readlink -f "$2") || return 1
  expected="$root/${file#"$2"/}"
  if [ -L "$file" ]; then
    refusal="a symbolic link (only regular files are uploaded)"
    return 1
  fi
  if [ ! -f "$file" ]; then
    refusal="not a regular file"
    return 1
  fi
  if ! exec {fd}<"$file"; then
    refusal="cannot be opened"
    return 1
  fi
  resolved=$(readlink "/proc/$pid/fd/$fd")
  if [ "$resolved" != "$expected" ] || [ ! -f "/proc/$pid/fd/$fd" ]; then
    refusal="it resolves to $resolved, not to a regular file at $expected"
    exec {fd}<&-
    return 1
  fi
  opened_fd=$fd
}

# stat_opened FD...: "<fd> inode size mtime" per open file: what writing to it moves. (Not the ctime: that also
# moves when the file is renamed over or unlinked, which leaves the open file's content as it was.)
stat_opened() {
  local fd paths=() pid=$BASHPID
  for fd in "$@"; do paths+=("/proc/$pid/fd/$fd"); done
  find -L "${paths[@]}" -maxdepth 0 -printf '%p %i %s %T@\n' 2>/dev/null | sed "s|^/proc/$pid/fd/||"
}

SHIP_ROUNDS=3  # a file that changed while it went up is sent again, at most this many times in all
SHIP_CHUNK=500 # files open at once (each upload round of a chunk is one aws process)

# ship_tree ROOT BUCKET PREFIX [DIR...]: every regular file under ROOT/DIR (each DIR relative to ROOT; all of ROOT
# when none) to s3://BUCKET/PREFIX<its path relative to ROOT>, untagged (tag_keys tags them), many files per `aws`
# process (`aws s3 cp --recursive` over a staging tree of links to the open files). Each file is opened with
# open_regular, uploaded from that open file, and looked at again afterwards: one that changed while it went up is
# sent again, SHIP_ROUNDS times at most, and so is a file that appeared meanwhile; a last look after the last round
# finds what still changed. Results (the caller's to read):
#   shipped        array: relative paths that went up and held still meanwhile
#   ship_failed    array: "path: error" for uploads that failed (after the CLI's own retries)
#   ship_refused   array: "path: why" for what is not a regular file
#   ship_unstable  array: relative paths that kept changing (or appeared) after their last upload
# shellcheck disable=SC2034 # the arrays are the caller's to read
ship_tree() {
  local root=$1 bucket=$2 prefix=$3 round line type rest fields relative dir chunk_start
  shift 3
  local dirs=("$@")
  [ ${#dirs[@]} -gt 0 ] || dirs=(.)
  shipped=()
  ship_failed=()
  ship_refused=()
  ship_unstable=()
  local -A done_stat=() failed_why=() refused_why=()
  local todo=() present=()
  for dir in "${dirs[@]}"; do
    # find does not descend into a symlinked directory: say so rather than skip it silently.
    [ ! -L "$root/$dir" ] || refused_why[$dir]="a symbolic link (only regular files are uploaded)"
  done
  for ((round = 1; round <= SHIP_ROUNDS + 1; round++)); do
    todo=()
    present=()
    # Not following symlinks, every entry that is not a directory, with what a change moves (as stat_opened prints).
    while IFS= read -r -d '' line; do
      type=${line%% *}
      rest=${line#* }
      fields=""
      for _ in 1 2 3; do
        fields+="${fields:+ }${rest%% *}"
        rest=${rest#* }
      done
      relative=${rest#./}
      if [ "$type" != f ]; then
        refused_why[$relative]=$(describe_type "$type")
        continue
      fi
      present+=("$relative")
      [ "${done_stat[$relative]:-}" = "$fields" ] || todo+=("$relative")
    done < <(cd "$root" 2>/dev/null && find "${dirs[@]}" -mindepth 1 ! -type d -printf '%y %i %s %T@ %p\0' 2>/dev/null | sort -z)
    [ ${#todo[@]} -gt 0 ] && [ "$round" -le "$SHIP_ROUNDS" ] || break
    [ "$round" = 1 ] || pause 1 # give a writer that was caught mid-file a moment to finish
    for ((chunk_start = 0; chunk_start < ${#todo[@]}; chunk_start += SHIP_CHUNK)); do
      ship_chunk "$root" "$bucket" "$prefix" "${todo[@]:chunk_start:SHIP_CHUNK}"
    done
    [ -z "$HARD_DEADLINE" ] || [ "$EPOCHSECONDS" -lt "$HARD_DEADLINE" ] || break
  done
  for relative in "${todo[@]}"; do
    [ -n "${failed_why[$relative]:-}" ] || [ -n "${refused_why[$relative]:-}" ] || ship_unstable+=("$relative")
  done
  for relative in "${present[@]}"; do
    [ -z "${done_stat[$relative]:-}" ] || shipped+=("$relative")
  done
  for relative in "${!failed_why[@]}"; do ship_failed+=("$relative: ${failed_why[$relative]}"); done
  for relative in "${!refused_why[@]}"; do ship_refused+=("$relative: ${refused_why[$relative]}"); done
}

describe_type() {
  case $1 in
    l) echo "a symbolic link (only regular files are uploaded)" ;;
    p) echo "a FIFO (only regular files are uploaded)" ;;
    s) echo "a socket (only regular files are uploaded)" ;;
    *) echo "not a regular file (find type $1)" ;;
  esac
}

# ship_chunk ROOT BUCKET PREFIX RELATIVE...: one upload round of up to SHIP_CHUNK files, for ship_tree (whose
# done_stat, failed_why and refused_why it fills in).
ship_chunk() {
  local root=$1 bucket=$2 prefix=$3 relative fd status key rest
  shift 3
  local stage="$WORK/stage" fds=() opened=() errors canonical pid=$BASHPID dir made="" resolved i line
  local -A name_of=() before=() after=()
  rm -rf "$stage"
  canonical=$(readlink -f "$root") || return 0
  # open_regular's checks, for many files with a few processes: open each (regular and not a link when listed), then
  # one readlink for all the open files: each must be the regular file at its own path under ROOT.
  for relative in "$@"; do
    if [ -L "$root/$relative" ] || [ ! -f "$root/$relative" ] || ! exec {fd}<"$root/$relative"; then
      refused_why[$relative]="not a regular file when opened"
      continue
    fi
    name_of[$fd]=$relative
    opened+=("$fd")
  done
  [ ${#opened[@]} -gt 0 ] || return 0
  i=0
  while IFS= read -r -d '' resolved; do
    fd=${opened[$i]}
    i=$((i + 1))
    relative=${name_of[$fd]}
    if [ "$resolved" != "$canonical/$relative" ] || [ ! -f "/proc/$pid/fd/$fd" ]; then
      refused_why[$relative]="it resolves to $resolved, not to a regular file at $canonical/$relative"
      exec {fd}<&-
      continue
    fi
    dir=$stage
    [[ $relative != */* ]] || dir="$stage/${relative%/*}"
    [ "$dir" = "$made" ] || mkdir -p "$dir"
    made=$dir
    ln -s "/proc/$pid/fd/$fd" "$stage/$relative"
    fds+=("$fd")
  done < <(cd "/proc/$pid/fd" && readlink -z -- "${opened[@]}")
  for fd in "${opened[@]:i}"; do # none, unless readlink could not read one
    refused_why[${name_of[$fd]}]="its open file could not be checked"
    exec {fd}<&-
  done
  [ ${#fds[@]} -gt 0 ] || return 0
  while read -r fd rest; do before[$fd]=$rest; done < <(stat_opened "${fds[@]}")
  run_bounded aws s3 cp --recursive --follow-symlinks --only-show-errors --no-progress "$stage/" "s3://$bucket/$prefix" \
    >"$WORK/cp.out" 2>"$ERR"
  status=$?
  while read -r fd rest; do after[$fd]=$rest; done < <(stat_opened "${fds[@]}")
  # Per-file failures: "upload failed: <staged path> to s3://<bucket>/<key> <error>", or "warning: Skipping file
  # <staged path>. ...". The CLI prints the staged path relative to the working directory (awscli's relative_path), so
  # a failure is found by its destination, which it prints whole, and a skipped file by the end of its staged path.
  errors=$(cat "$WORK/cp.out" "$ERR" 2>/dev/null | grep -E '^(upload failed|warning): ' || true)
  for fd in "${fds[@]}"; do
    relative=${name_of[$fd]}
    exec {fd}<&-
    unset "failed_why[$relative]"
    key=" to s3://$bucket/$prefix$relative "
    if [[ $errors == *"$key"* ]]; then
      line=$(grep -F -- "$key" <<<"$errors" | head -n 1)
      failed_why[$relative]=${line#*"$key"}
    elif [[ $errors == *"stage/$relative. "* ]]; then
      line=$(grep -F -- "stage/$relative. " <<<"$errors" | head -n 1)
      failed_why[$relative]=${line#warning: }
    elif [ "$status" = 124 ]; then
      failed_why[$relative]="not uploaded: stopped at the SIGTERM deadline"
    elif [ "$status" != 0 ] && [ -z "$errors" ]; then
      failed_why[$relative]=$(last_error)
    elif [ -n "${before[$fd]:-}" ] && [ "${before[$fd]}" = "${after[$fd]:-}" ]; then
      done_stat[$relative]=${after[$fd]}
    fi
  done
  rm -rf "$stage"
}

# tag_keys BUCKET TAG_KEY LIST: tags each object named in LIST (NUL-separated pairs: value, key) TAG_KEY=value,
# TAG_PARALLEL (4) at a time; S3 has no bulk tagging, so each is one `aws` process. The lifecycle rules expire objects
# by that tag; an untagged one only never expires. Each key tagged is added to $WORK/tagged as it is (NUL-terminated,
# one write): what is on so far when a caller stops the tagging midway (tag_before_index), read by untagged_of.
tag_keys() {
  local bucket=$1 tag=$2 list=$3
  : >"$WORK/tagged"
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  xargs -0 -r -n 2 -P "${TAG_PARALLEL:-4}" bash -c '
    if aws s3api put-object-tagging --bucket "$1" --key "$5" --tagging "TagSet=[{Key=$2,Value=$4}]" 2>/dev/null; then
      printf "%s\0" "$5" >>"$3/tagged"
    fi
  ' _ "$bucket" "$tag" "$WORK" <"$list" || true
}

# tag_before_index BUCKET TAG_KEY LIST PREFIX NOUN RELATIVE...: tag_keys before index.json, in the background, so
# that a SIGTERM stops it at once: the uploaders' on_term sets HARD_DEADLINE to the SIGTERM's second while tagging=1,
# and await ends the tagging and its `aws` calls there; index.json comes first, the tags after it (a thousand tagging
# calls take minutes, past the spot notice). Nothing is tagged when the SIGTERM came before. Then untagged_of PREFIX
# RELATIVE... says what has no tag yet, and a message says why (NOUN: what they are, "artifacts", "outputs"): a
# SIGTERM stopped the tagging, or S3 refused some tags (those objects never expire by the lifecycle rules).
# shellcheck disable=SC2034 # tagging is on_term's to read
tag_before_index() {
  local bucket=$1 tag=$2 list=$3 prefix=$4 noun=$5 stopped=0 names
  shift 5
  : >"$WORK/tagged"
  if [ "${terminated:-0}" = 0 ]; then
    tagging=1
    tag_keys "$bucket" "$tag" "$list" &
    await $! || true
    tagging=0
    stopped=$terminated
  fi
  untagged_of "$prefix" "$@"
  if [ "$stopped" = 1 ]; then
    log "SIGTERM while tagging: index.json first, the $untagged $noun with no tag yet after it"
  elif [ "${terminated:-0}" = 0 ] && [ "$untagged" -gt 0 ]; then
    names=("${untagged_relatives[@]:0:3}")
    warn "$untagged $noun could not be tagged (they never expire): ${names[*]/#/"$prefix"}"
  fi
}
# untagged_of PREFIX RELATIVE...: sets untagged_relatives to those of RELATIVE... whose key PREFIX<relative> has no
# tag yet (not in $WORK/tagged: failed, stopped in flight, or never tried), and untagged to their number. A record the
# stopped tagging was writing has no NUL yet and is not read: that call counts as untagged (S3 may or may not have it).
# shellcheck disable=SC2034 # untagged is the caller's to read
untagged_of() {
  local prefix=$1 key relative
  local -A tag_on=()
  shift
  while IFS= read -r -d '' key; do
    tag_on[$key]=1
  done <"$WORK/tagged"
  untagged_relatives=()
  for relative in "$@"; do
    [ -n "${tag_on[${prefix}${relative}]:-}" ] || untagged_relatives+=("$relative")
  done
  untagged=${#untagged_relatives[@]}
}

# --- The Pushgateway ---------------------------------------------------------------------------------------------
# It keeps a group until the group is deleted (it has no TTL): a finished seed's or shard's last values would be
# scraped for ever. The uploaders (upload.sh, job-upload.sh) delete their pod's group after index.json, once the
# collector had time to scrape its last push (naming.pushgateway_linger_seconds()).

# pushgateway_retire URL GROUP SECONDS [TIMEOUT]: keeps GROUP SECONDS more for a last scrape (cut short as soon as the
# sourcing script's `terminated` is 1: after SIGTERM the spot notice comes first), then deletes it
# (pushgateway_delete). A failure is a warning and returns 1; it never changes what the pod reports.
pushgateway_retire() {
  local url=$1 group=$2 seconds=$3 timeout=${4:-10} linger_until
  if [ "${terminated:-0}" = 0 ] && [ "$seconds" -gt 0 ]; then
    log "keeping the Pushgateway group $group for ${seconds} s, for a last scrape"
    linger_until=$((EPOCHSECONDS + seconds))
    while [ "${terminated:-0}" = 0 ] && [ "$EPOCHSECONDS" -lt "$linger_until" ]; do
      pause 1
    done
  fi
  pushgateway_delete "$url" "$group" "$timeout"
}

# pushgateway_delete URL GROUP [TIMEOUT]: DELETE <url>/metrics/<group> over bash's /dev/tcp (the AWS CLI image has no
# curl; plain http:// only), the whole exchange, connect included, bounded by TIMEOUT seconds (10). Returns 1 with a
# warning when the group may still be there.
pushgateway_delete() {
  local url=$1 group=$2 timeout=${3:-10} rest authority host port path answer
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
  answer=$(timeout "$timeout" bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "DELETE %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3" "$4" >&3 || exit 1
    IFS= read -r line <&3 || exit 1
    printf "%s" "$line"
  ' _ "$host" "$port" "$path" "$authority" 2>"$ERR")
  case $? in
    0) answer=${answer%$'\r'} ;;
    124)
      warn "could not delete the Pushgateway group at $url$path: no answer within ${timeout} s"
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
