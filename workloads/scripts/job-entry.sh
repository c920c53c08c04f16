#!/bin/sh
# job-entry: the command of a batch job pod's work container, which runs the user's image. POSIX sh only: that
# image is guaranteed nothing but /bin/sh (dash, busybox ash or bash), so no bash, no jq, and of the usual tools only
# sleep (for the waits below and maxRuntime; without it, only the Job's deadline bounds the program).
#
#   /bin/sh /opt/simfleet/job-entry.sh <command> [args...]
#
# 0. The result channel. output-uploader (job-upload.sh) creates the FIFO $SIMFLEET_RESULT_FIFO (required) in the
#    marker directory, which this container mounts read-only: the program cannot write a result file there. This
#    opens the FIFO read-write (which never blocks, and a read-only mount allows for a FIFO), says "started <pid>",
#    and waits for the uploader to unlink it, so nothing started later can open it by its name; only this script
#    holds it (the program's copy of the descriptor is closed). When this script dies without a word (its container
#    killed, out of memory), the uploader reads the end of the channel at once: no wait for a marker that never comes.
#    It waits SIMFLEET_CHANNEL_WAIT_SECONDS (300) for the FIFO to appear and 60 s for it to be taken.
# 1. Runs the command as a child (not exec: the result comes after it); its stdout and stderr pass through.
# 2. SIGTERM goes on to the child as SIGTERM, and this keeps waiting for it (the pod's
#    terminationGracePeriodSeconds bounds that). SIGINT goes on as SIGTERM too: sh starts a background command
#    with SIGINT ignored (POSIX, when job control is off, as it is without a terminal), and dash cannot undo
#    that, so a forwarded SIGINT would be lost.
# 3. When the child has ended, writes the result to the channel as one line of JSON (one write, under PIPE_BUF, so
#    it arrives whole) and closes it:
#      {"status": "Succeeded" | "Failed" | "Interrupted", "exitCode": <int>, "reason": <string> | null}
#    Succeeded: exit 0 and no signal; Interrupted: a SIGTERM or SIGINT arrived, whatever the exit code;
#    Failed otherwise, with reasons such as "exited with code 3", "killed by signal 9 (exit code 137)",
#    "command not found: <command>" (127) or "command not executable: <command>" (126). Every reason is
#    written by this script from whole numbers and, where the command's name is plain ([A-Za-z0-9._/+-]),
#    that name, so it needs no JSON escaping.
# 4. Exits with the child's exit code (128 + N when signal N ended it), so the Job's pod failure accounting and
#    backoffLimitPerIndex see the real result; 124 when maxRuntime ran out (see below).
# Also: exports the shard (JOB_COMPLETION_INDEX, SIMFLEET_SHARD: SIMFLEET_SHARD_LIST maps a position to a shard)
# and SIMFLEET_PUSHGATEWAY_GROUP_URL to the program, and stops it after SIMFLEET_MAX_RUNTIME_SECONDS.
#
# No command, or no SIMFLEET_RESULT_FIFO: one line on stderr and exit 2 (with a Failed result when the channel is
# open). A channel that never appears or is never taken: one line on stderr, exit 2, the program not run.
set -u

me=job-entry
fifo=${SIMFLEET_RESULT_FIFO:-}
channel_open=0

# write_result STATUS EXIT_CODE REASON: the result, to the channel (REASON "" is null; it is always plain ASCII from
# this script, so it needs no JSON escaping).
write_result() {
  if [ -n "$3" ]; then
    json_reason="\"$3\""
  else
    json_reason=null
  fi
  [ "$channel_open" = 1 ] || return 1
  if ! printf '{"status": "%s", "exitCode": %s, "reason": %s}\n' "$1" "$2" "$json_reason" >&3; then
    echo "$me: cannot write the result to $fifo" >&2
    return 1
  fi
  exec 3>&-
  channel_open=0
}

# wait_until SECONDS TEST...: runs TEST every tenth of a second (every second where sleep takes whole seconds only)
# until it succeeds (0) or SECONDS passed (1).
wait_until() {
  left=$(($1 * 10))
  shift
  until "$@"; do
    [ "$left" -gt 0 ] || return 1
    if sleep 0.1 2>/dev/null; then
      left=$((left - 1))
    else
      sleep 1
      left=$((left - 10))
    fi
  done
}
# shellcheck disable=SC2329 # called through wait_until
fifo_gone() { [ ! -e "$fifo" ]; }

# name: $1 when it is safe to quote in the marker's JSON as it is, else "". Set, not printed: this runs after the
# traps are set, where no $(...) is expanded (bash as /bin/sh is 5.2 in many images: a signal that lands while it
# expands a command substitution can have its trap parsed as that substitution's rest and lost; dash is not affected).
plain_name() {
  case $1 in
    '' | *[!A-Za-z0-9._/+-]*) name="" ;;
    *) name=$1 ;;
  esac
}

if [ -z "$fifo" ]; then
  echo "$me: SIMFLEET_RESULT_FIFO is not set (the uploader's result channel, e.g. /simfleet/result)" >&2
  exit 2
fi
channel_wait=${SIMFLEET_CHANNEL_WAIT_SECONDS:-300}
case $channel_wait in
  '' | *[!0-9]*)
    echo "$me: SIMFLEET_CHANNEL_WAIT_SECONDS must be whole seconds" >&2
    exit 2
    ;;
esac
if ! wait_until "$channel_wait" test -p "$fifo"; then
  echo "$me: no result channel at $fifo after ${channel_wait} s (is output-uploader running?); not running the program" >&2
  exit 2
fi
# Read-write: opening a FIFO so never blocks (Linux), whether or not the uploader reads yet.
if ! exec 3<>"$fifo"; then
  echo "$me: cannot open the result channel $fifo" >&2
  exit 2
fi
channel_open=1
printf 'started %s\n' "$$" >&3
if ! wait_until 60 fifo_gone; then
  echo "$me: output-uploader did not take the result channel $fifo within 60 s; not running the program" >&2
  write_result Failed 2 "output-uploader did not take the result channel"
  exit 2
fi
if [ $# -eq 0 ]; then
  echo "$me: no command to run (usage: job-entry.sh <command> [args...])" >&2
  write_result Failed 2 "job-entry.sh was given no command"
  exit 2
fi

# The shard. On a Job for the shards left after a lost state, the completion index is a position in
# SIMFLEET_SHARD_LIST; the program always sees its own shard number, in JOB_COMPLETION_INDEX and SIMFLEET_SHARD.
shard=${JOB_COMPLETION_INDEX:-}
if [ -n "${SIMFLEET_SHARD_LIST:-}" ]; then
  position=0
  found=""
  for candidate in $SIMFLEET_SHARD_LIST; do
    if [ "$position" = "$shard" ]; then
      found=$candidate
      break
    fi
    position=$((position + 1))
  done
  if [ -z "$found" ]; then
    echo "$me: no shard at position '$shard' of SIMFLEET_SHARD_LIST '$SIMFLEET_SHARD_LIST'" >&2
    write_result Failed 2 "no shard at this position of SIMFLEET_SHARD_LIST"
    exit 2
  fi
  shard=$found
fi
if [ -n "$shard" ]; then
  JOB_COMPLETION_INDEX=$shard
  SIMFLEET_SHARD=$shard
  export JOB_COMPLETION_INDEX SIMFLEET_SHARD
  if [ -n "${SIMFLEET_PUSHGATEWAY_URL:-}" ] && [ -n "${SIMFLEET_JOB:-}" ]; then
    # Where this shard pushes its metrics; output-uploader deletes the same group after the shard ends.
    SIMFLEET_PUSHGATEWAY_GROUP_URL="${SIMFLEET_PUSHGATEWAY_URL%/}/metrics/job/$SIMFLEET_JOB/shard/$shard"
    export SIMFLEET_PUSHGATEWAY_GROUP_URL
  fi
fi

# maxRuntime: SIMFLEET_MAX_RUNTIME_SECONDS after the start the program gets SIGTERM, and SIMFLEET_TERM_SECONDS
# later SIGKILL; the shard then fails with exit code 124 (as `timeout` reports), which the Job's podFailurePolicy
# turns into a failed index without a retry: the same program would only run out of time again.
max_runtime=${SIMFLEET_MAX_RUNTIME_SECONDS:-0}
term_seconds=${SIMFLEET_TERM_SECONDS:-60}
case "$max_runtime$term_seconds" in
  *[!0-9]*)
    echo "$me: SIMFLEET_MAX_RUNTIME_SECONDS and SIMFLEET_TERM_SECONDS must be whole seconds" >&2
    write_result Failed 2 "SIMFLEET_MAX_RUNTIME_SECONDS and SIMFLEET_TERM_SECONDS must be whole seconds"
    exit 2
    ;;
esac
TIMEOUT_EXIT=124
timed_out=0
child_done=0
timer=""
killer=""

# after SECONDS COMMAND...: run COMMAND in the background once SECONDS have passed, unless that background
# process is sent SIGTERM first (which also ends its sleep, so nothing outlives it). Without the result channel: a
# timer still holding it would keep the uploader from seeing this script die.
# A SIGTERM can land after `sleep &` started and before `nap=$!` names it (the shell runs a trap between commands,
# so the trap then finds no pid): `stopped` remembers it, and the sleep is ended once its pid is known. The sleep
# gets SIGKILL: a SIGTERM that reaches the forked child before it has reset the shell's handlers and exec'd sleep
# is caught and lost (dash). A SIGTERM that reaches the subshell itself while it is still starting can be lost the
# same way (dash, 65 of 200 in a loop of this shape): the timer then sleeps out SECONDS. So it holds neither the
# container's stdout nor its stderr (it writes nothing): the entry's output ends with the entry, and a timer left
# over ends with the container, whose PID 1 the entry is. (Before, a 60 s maxRuntime kept a reader waiting 60 s.)
after() {
  seconds=$1
  shift
  (
    stopped=0
    nap=""
    trap 'stopped=1; [ -z "$nap" ] || kill -KILL "$nap" 2>/dev/null' TERM
    sleep "$seconds" &
    nap=$!
    if [ "$stopped" = 1 ]; then
      kill -KILL "$nap" 2>/dev/null
      exit 0
    fi
    wait "$nap" && [ "$stopped" = 0 ] && "$@"
  ) >/dev/null 2>&1 3>&- &
}

# Signals: counted, remembered, and passed on once the child exists. Both traps are set before the child starts
# (it does not inherit them: a trapped signal is back to its default in a child).
signal=""
signals=0
child=""
# shellcheck disable=SC2329 # called by the traps below
on_signal() {
  signal=$1
  signals=$((signals + 1))
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null
  fi
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT
# shellcheck disable=SC2329 # called by the trap below
on_timeout() {
  [ "$child_done" = 0 ] || return 0 # the alarm came after the program had ended: it ended in time
  timed_out=1
  if [ -n "$child" ]; then
    echo "$me: maxRuntime (${max_runtime} s) reached: SIGTERM to the program, SIGKILL in ${term_seconds} s" >&2
    kill -TERM "$child" 2>/dev/null
    after "$term_seconds" kill -KILL "$child"
    killer=$!
  fi
}
trap on_timeout USR1

# The program has no use for the channel; only this script writes to it (3>&-: the program does not get it).
unset SIMFLEET_RESULT_FIFO SIMFLEET_CHANNEL_WAIT_SECONDS
# `<&0` asks for the container's stdin; dash and busybox ash give a background command /dev/null before
# redirections, so there it stays /dev/null, which a Job's container has anyway.
"$@" 3>&- <&0 &
child=$!
if [ -n "$signal" ]; then
  kill -TERM "$child" 2>/dev/null # the signal came while the child was being started
fi
if [ "$max_runtime" -gt 0 ] && ! command -v sleep >/dev/null 2>&1; then
  echo "$me: this image has no sleep command, so maxRuntime (${max_runtime} s) is not enforced here; the Job's" \
    "activeDeadlineSeconds still is" >&2
  max_runtime=0
fi
if [ "$max_runtime" -gt 0 ]; then
  after "$max_runtime" kill -USR1 $$
  timer=$!
fi

# A trapped signal ends `wait` early (with 128 + its number): wait again until the child itself has ended. If a
# signal lands in the instant after the child ended and before this checks, bash (not dash) answers the second
# wait with 127: then only the exit code is off, never the status (any signal means Interrupted).
while :; do
  before=$signals
  alarms_before=$timed_out
  wait "$child"
  code=$?
  # The maxRuntime alarm (USR1) ends a wait early as a signal does.
  if { [ "$signals" -eq "$before" ] && [ "$timed_out" = "$alarms_before" ]; } || [ "$code" -le 128 ]; then
    break
  fi
done
child_done=1
for helper in $timer $killer; do
  kill "$helper" 2>/dev/null # the program has ended: no alarm, no SIGKILL for a pid that may be reused
done

# Could the shell have started $1 at all? (A command that ran and exited 126 or 127 itself is not blamed on this.)
runnable() {
  case $1 in
    */*) [ -f "$1" ] && [ -x "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}
plain_name "$1"
if [ "$timed_out" = 1 ] && [ -z "$signal" ]; then
  status=Failed
  reason="exceeded maxRuntime (${max_runtime} s); the command exited with code $code"
  code=$TIMEOUT_EXIT
elif [ -n "$signal" ]; then
  status=Interrupted
  if [ "$code" -gt 128 ]; then
    reason="received SIG$signal; the command was ended by signal $((code - 128)) (exit code $code)"
  else
    reason="received SIG$signal; the command exited with code $code"
  fi
elif [ "$code" -eq 0 ]; then
  status=Succeeded
  reason=""
elif [ "$code" -eq 127 ] && ! runnable "$1"; then
  status=Failed
  reason="command not found${name:+: $name} (exit code 127)"
elif [ "$code" -eq 126 ] && ! runnable "$1"; then
  status=Failed
  reason="command not executable${name:+: $name} (exit code 126)"
elif [ "$code" -gt 128 ]; then
  status=Failed
  reason="killed by signal $((code - 128)) (exit code $code)"
else
  status=Failed
  reason="exited with code $code"
fi
[ "$status" = Succeeded ] || echo "$me: $status: $reason" >&2
write_result "$status" "$code" "$reason"
exit "$code"
