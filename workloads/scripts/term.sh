# shellcheck shell=bash
# SIGTERM and bounded waits for the bash pod scripts: the guardian that holds the TERM trap (guard_term), how it tells
# the worker (term_poll, its watcher, the script's on_term), and the waits a SIGTERM ends at once or a deadline bounds
# (pause, await, run_bounded, retry_until). Sourced by common.sh, right after its first lines (which note a SIGTERM
# that comes before guard_term's trap) and its log/warn/last_error; never run, never sourced on its own.
#
# The sourcing script may set HARD_DEADLINE (epoch seconds; empty: none): after SIGTERM, when work run through
# run_bounded must stop; and define on_term, which term_poll calls once after a SIGTERM.

HARD_DEADLINE=${HARD_DEADLINE:-}
# A wait below that can block on another child also waits on one that ends within WAIT_TICK seconds: the watcher in
# the worker, await's deadline sleeper in a subshell (one with no deadline has no other child to block on, and bash
# then finds the job), so that a job whose end bash missed is noticed by then at the latest. bash 5.2's `wait -n` can
# miss one: a job that ends as the wait starts (the SIGCHLD it held while it scanned its jobs is handled when it lets
# it through: jobs.c wait_for_any_job, whose wait_for(ANY_PID) then blocks in waitpid(-1) for another child). Here 1
# in 2,000 to 6,000 waits on a job that had just ended blocked until the watcher's end: the SIGTERM, when the watcher
# never ended on its own. bash 5.3 looks for such a job before it blocks (jobs.c, "a dead job that was reaped when
# SIGCHLD was unblocked"), but only in the job slots before the first running one: the tick stays.
# A whole or fractional number of seconds above 0 (anything else is the default, 5: guard_term checks it);
# SIMFLEET_WAIT_TICK_SECONDS is for the tests.
WAIT_TICK=${SIMFLEET_WAIT_TICK_SECONDS:-5}
# guard_term's state (set there; empty in a shell that never called it, where pause and await just wait).
TERM_DIR=""
term_watcher=""
term_watcher_of=""

# --- Why a guardian ----------------------------------------------------------------------------------------------
# Why no script traps TERM in the shell that does its work: bash 5.2 (the image's is 5.2.15) runs a trap that is
# pending when it starts to parse a $(...) or <(...) it expands (parse.y xparse_dolparen -> builtins/evalstring.c
# parse_string -> eval.c parse_command -> trap.c run_pending_traps) while the parser is still set up for that
# substitution (PST_CMDSUBST, shell_eof_token ')', token_to_read DOLPAREN, none of them saved). The trap's text is then
# read as the substitution's body and fails ("trap: line 2: unexpected EOF while looking for matching `)'"): the trap
# never runs, so the SIGTERM is lost, and the command being expanded is thrown away too. A SIGTERM that arrives while
# a command's first $(...) runs and finds a second one in the same command always hits it. bash 5.3 no longer runs
# traps there (eval.c parse_command, devel commit aab2c1fb, 2023-09); no bash 5.2 patch (1 to 37) has that change.
#
# guard_term MODE ARGS...: the first thing each script does, with its own arguments. Where it is first called, this
# process becomes the guardian (PID 1 of the container): it traps TERM, starts the script again as its only child (the
# worker, where guard_term returns), waits for it and exits with its status. The guardian runs no command
# substitution after its trap is set, so its trap is always parsed whole; the worker has no TERM trap at all. On
# SIGTERM:
#   stop    the worker gets SIGKILL and everything under it SIGTERM: they end at once; the guardian says "terminated"
#           and exits 143 (fetch.sh, gate.sh).
#   notify  the worker carries on and is told: the guardian writes the second of the SIGTERM to a file, then ends the
#           worker's watcher, a `sleep` child that every pause and await of the worker waits for beside its own job,
#           so that wait ends at once; term_poll then sets terminated=1 and term_at, and calls the script's own
#           on_term when it has one (upload.sh, job-upload.sh). Subshells of the worker have no watcher: each one's
#           parent stops it at its deadline (await).
# What the worker starts and then ends itself (a pause's sleep, await's sleeper, a job stopped at its deadline, the
# watcher) gets SIGKILL, not SIGTERM: without a TERM trap, a child of the worker that a catchable signal reaches between
# its fork and the start of its program has bash's own handler for terminating signals (set once an EXIT trap is:
# trap.c set_signal -> initialize_terminating_signals), which runs the EXIT trap it inherited (sig.c termsig_handler ->
# run_exit_trap): the worker's scratch directory and result channel removed under it. (The old TERM trap kept such a
# child on trap.c trap_handler, which resends the signal at its default.)
guard_term() {
  local mode=$1 attempt seen dir
  shift
  [[ $WAIT_TICK =~ ^[0-9]+(\.[0-9]+)?$ ]] && ! [[ $WAIT_TICK =~ ^0*\.?0*$ ]] || WAIT_TICK=5
  terminated=0
  term_watcher=""
  term_watcher_of=""
  if [ -n "${SIMFLEET_TERM_GUARD:-}" ] && [ "${SIMFLEET_TERM_GUARD%%:*}" = "$PPID" ]; then
    # The worker.
    term_at=""
    TERM_DIR=${SIMFLEET_TERM_GUARD#*:}
    unset SIMFLEET_TERM_GUARD
    [ "$mode" = stop ] || term_watch
    return 0
  fi
  # The guardian. From here on: no $(...), <(...) or >(...), in this function or in what it calls.
  # bash reports a job that a signal ended ("Killed": the worker stop mode SIGKILLs) on its own stderr, wherever it
  # notices it, in the trap too: the guardian's stderr is /dev/null from here, and the container's, kept as guard_err,
  # is the worker's and the guardian's own messages' (guard_say).
  exec {guard_err}>&2 2>/dev/null
  guard_mode=$mode
  guard_child=""
  guard_signals=0
  TERM_DIR=""
  # (term_at is set already when a SIGTERM came since this file was sourced: acted on below.)
  trap guard_on_term TERM
  if [ "$mode" = notify ]; then
    for attempt in 1 2 3 4 5 6 7 8; do
      TERM_DIR="${TMPDIR:-/tmp}/simfleet-term.$$.$SRANDOM"
      ! mkdir -m 700 "$TERM_DIR" 2>/dev/null || break
      TERM_DIR=""
    done
    if [ -z "$TERM_DIR" ]; then
      guard_say "cannot make a private directory in ${TMPDIR:-/tmp} (tried $attempt names)"
      exit 1
    fi
    [ -z "$term_at" ] || guard_on_term # a SIGTERM came before the directory was there to write it to
  fi
  if [ -n "$term_at" ] && [ "$mode" = stop ]; then
    guard_on_term # ("terminated")
    exit 143      # before the worker was started: nothing to stop
  fi
  SIMFLEET_TERM_GUARD="$$:$TERM_DIR" "$BASH" "$0" "$@" 2>&"$guard_err" {guard_err}>&- &
  guard_child=$!
  [ -z "$term_at" ] || guard_on_term # a SIGTERM while it was being started: it is stopped, or told, now
  # A wait cut short by the trap answers 128+15: wait again until a wait ends without a SIGTERM meanwhile. (Not in
  # posix mode, bash keeps the status of a child it has reaped, so a second wait still gets it.)
  while :; do
    seen=$guard_signals
    guard_status=0
    wait "$guard_child" || guard_status=$?
    [ "$guard_signals" != "$seen" ] || break
  done
  # (stop mode: the worker this SIGKILLed ended as a SIGTERM ends a script)
  [ "$mode" != stop ] || [ -z "$term_at" ] || [ "$guard_status" != 137 ] || guard_status=143
  # A worker that a signal ended otherwise (an OOM kill reaches it, not PID 1): said here, since bash's job notice
  # ("Killed"), the only trace of it in the container's log before, goes nowhere now.
  if [ "$guard_status" -gt 128 ] && [ -z "$term_at" ]; then
    guard_say "the script's process ended by signal $((guard_status - 128)) (exit status $guard_status), without a SIGTERM: out of memory?"
  elif [ "$guard_status" -gt 128 ] && [ "$mode" != stop ]; then
    guard_say "the script's process ended by signal $((guard_status - 128)) (exit status $guard_status) after the SIGTERM"
  fi
  if [ -n "$TERM_DIR" ]; then
    # After a SIGTERM they are ended already. Otherwise the worker's last one outlives it by up to a tick: its parent is
    # now this process (PID 1 of the container) or the host's init.
    [ -n "$term_at" ] || guard_end_watchers "$$ 1"
    dir=$TERM_DIR
    TERM_DIR="" # a SIGTERM from now on has no worker to tell
    rm -rf "$dir"
  fi
  exit "$guard_status"
}

# The guardian's messages, on the container's stderr (guard_term).
guard_say() { warn "$@" 2>&"$guard_err"; }

# The guardian's trap (see guard_term). No command substitution here either.
guard_on_term() {
  guard_signals=$((guard_signals + 1))
  term_at=${term_at:-$EPOCHSECONDS}
  if [ "$guard_mode" = stop ]; then
    [ "$guard_signals" != 1 ] || guard_say "terminated"
    # The worker with SIGKILL, what it started with SIGTERM (kill_tree: the worker first). A worker still running when
    # its foreground command died of the SIGTERM would report that death ("Terminated", bash's job notice) on the
    # container's stderr: 166 of 200 stops with 8 at a time did before. SIGKILL ends it where it is; its EXIT trap
    # (the scratch directory's removal) does not run, and the container ends with it. The guardian exits 143.
    [ -z "$guard_child" ] || kill_tree TERM "$guard_child" KILL
  elif [ -n "$TERM_DIR" ] && [ ! -f "$TERM_DIR/term_at" ]; then
    # The second first, then the wake-up: a worker that wakes finds it, and one that is not watching yet reads it
    # after it has made its watcher (term_watch), and ends that one itself. Once only: a later SIGTERM would find the
    # pids of watchers ended already, which may name other processes by then.
    printf '%s\n' "$term_at" >"$TERM_DIR/term_at"
    guard_end_watchers
  fi
}

# guard_end_watchers [PARENTS]: ends the watchers named in $TERM_DIR, each only while it is the process its shell
# named, a child of that shell or of one of PARENTS (space-separated pids: where an orphan goes).
guard_end_watchers() {
  local file pid started
  for file in "$TERM_DIR"/watcher.*; do
    if [ -f "$file" ] && read -r pid started <"$file" && [[ $pid =~ ^[0-9]+$ ]] &&
      is_watcher "$pid" "$started" "${file##*.} ${1:-}"; then
      # SIGTERM once it runs sleep: bash reports no job that SIGTERM ended (config-top.h DONT_REPORT_SIGTERM), where
      # a SIGKILLed watcher was reported ("Killed") on the container's stderr whenever the worker noticed its end
      # before it waited for it (after a foreground command, or in a `wait -n` that returned another job). Still its
      # fork: SIGKILL (see guard_term, why not a catchable signal there).
      if [ "$proc_name" = sleep ]; then
        kill -TERM "$pid" 2>/dev/null || true
      else
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
  done
}

# is_watcher PID STARTED PARENTS: whether PID is still the watcher its shell named in its file, the process that
# started at STARTED (proc_stat), whose parent is one of PARENTS (space-separated pids): a watcher ends every
# WAIT_TICK seconds, and its number may have been taken by another process (of this container) before its shell
# names the next one. Not whether it runs `sleep` yet: from its fork until its exec it runs bash, and its shell may
# be waiting on it already (up to 140 ms here under load), so a SIGTERM then would wait for its tick. (No command
# substitution: the guardian calls this.)
is_watcher() {
  proc_stat "$1" && [ "$proc_started" = "$2" ] && [[ " $3 " == *" $proc_parent "* ]]
}

# proc_stat PID: sets proc_name to PID's command name, proc_parent to its parent and proc_started to its start time
# (clock ticks after boot, fixed at its fork: with the pid, it names one process); returns 1 when PID is gone.
# /proc/PID/stat reads "PID (NAME) S PPID ..." with the start time 20 fields after NAME, which may hold spaces and
# parentheses. No command substitution: the guardian calls this.
proc_stat() {
  local line fields
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
  proc_name=${line#* (}
  proc_name=${proc_name%) *}
  read -r -a fields <<<"${line##*) }"
  proc_parent=${fields[1]}
  proc_started=${fields[19]}
}

# The worker's watcher: a child that does nothing until the guardian ends it on SIGTERM, or until WAIT_TICK seconds
# are over (see WAIT_TICK); term_poll then makes the next one. (Its stdout and stderr are not the container's: a
# watcher left behind must not hold them open.)
term_watch() {
  sleep "$WAIT_TICK" >/dev/null 2>&1 &
  term_watcher=$!
  term_watcher_of=$BASHPID
  proc_started=""
  proc_stat "$term_watcher" || true # (gone already, reaped on its SIGCHLD: a tick that short names nothing)
  printf '%s %s\n' "$term_watcher" "$proc_started" >"$TERM_DIR/watcher.$BASHPID"
  term_poll # a SIGTERM before the watcher was named in $TERM_DIR
}

# term_poll: after a SIGTERM to the guardian, sets terminated=1 and term_at (its epoch second) and calls on_term, once.
# Cheap (a test of a file): pause and await call it before every wait and after it. Before, because bash forgets an
# ended background job once a later foreground command has been waited for: a watcher ended meanwhile no longer ends
# a `wait -n`. Nothing runs in the foreground between that call and the wait, so a watcher ended after it does.
term_poll() {
  local at
  [ -n "${TERM_DIR:-}" ] && [ "${terminated:-0}" = 0 ] || return 0
  # `read` fails on a line the guardian has not finished writing: it is looked at again at the next call.
  if [ -f "$TERM_DIR/term_at" ] && read -r at <"$TERM_DIR/term_at" && [[ $at =~ ^[0-9]+$ ]]; then
    terminated=1
    term_at=$at
    if [ "$term_watcher_of" = "$BASHPID" ] && [ -n "$term_watcher" ]; then
      reap "$term_watcher" # ended already, unless this saw the file first
      term_watcher=""
    fi
    if declare -F on_term >/dev/null; then
      on_term
    fi
  elif [ "$term_watcher_of" = "$BASHPID" ] && [ -n "$term_watcher" ] && ! kill -0 "$term_watcher" 2>/dev/null; then
    reap "$term_watcher" # its tick is over (or something else ended it): waited for, and a new one
    term_watch
  fi
  return 0
}

# The pids this shell's waits also end on: the watcher, when this shell is the worker that made it.
term_waits() {
  waits=()
  [ -z "$term_watcher" ] || [ "$term_watcher_of" != "$BASHPID" ] || waits=("$term_watcher")
}

# kill_tree SIGNAL PID [ROOT_SIGNAL]: SIGNAL to PID and every process under it, found through /proc (the image has
# no pkill), PID first, with ROOT_SIGNAL when given (SIGKILL ends PID before anything under it can die): a
# job's own children (its aws call) must not outlive it. Best effort: a process forked meanwhile can be missed.
kill_tree() {
  local signal=$1 stat line pid i
  local -A parent_of=()
  local tree=("$2")
  for stat in /proc/[0-9]*/stat; do
    { read -r line <"$stat"; } 2>/dev/null || continue
    pid=${line%% *}
    line=${line##*) } # after the command name, which may hold spaces and parentheses: "S <ppid> ..."
    line=${line#* }
    parent_of[$pid]=${line%% *}
  done
  for ((i = 0; i < ${#tree[@]}; i++)); do
    for pid in "${!parent_of[@]}"; do
      [ "${parent_of[$pid]}" != "${tree[i]}" ] || tree+=("$pid")
    done
  done
  kill "-${3:-$signal}" "${tree[0]}" 2>/dev/null || true
  [ ${#tree[@]} = 1 ] || kill "-$signal" "${tree[@]:1}" 2>/dev/null || true
}

# Sleeps $1 seconds in the background, so that a SIGTERM ends the wait at once (the watcher's end) where a
# foreground sleep would hold it back. The sleep is then ended too, so that no stray process keeps the container's
# stdout open. Always returns 0.
pause() {
  local pid ended="" waits=() was=${terminated:-0}
  term_poll
  [ "${terminated:-0}" = "$was" ] || return 0 # a SIGTERM came meanwhile: this wait is over
  sleep "$1" &
  pid=$!
  # Until the sleep ends, or a SIGTERM comes: the watcher's tick ends a wait too, and is no reason to stop.
  while term_poll && [ "${terminated:-0}" = "$was" ] && kill -0 "$pid" 2>/dev/null; do
    term_waits
    ended=""
    wait -n -p ended "$pid" "${waits[@]}" 2>/dev/null || true
    [ "${ended:-}" != "$pid" ] || break
  done
  # (`wait -n -p` leaves the name unset when a trapped signal ends it, in a shell of the caller's that traps one.)
  [ "${ended:-}" = "$pid" ] || reap "$pid"
  term_poll
  return 0
}

# run_bounded CMD...: runs CMD in the background and waits for it (await), so a SIGTERM is seen at once rather than
# when CMD ends; CMD keeps running meanwhile. Returns CMD's status.
run_bounded() {
  "$@" &
  await $!
}

# await PID: waits for a background job of this shell; once HARD_DEADLINE is set, the job and what it started are
# stopped there (SIGKILL, see guard_term; status 124, as `timeout` reports). Returns the job's status. (wait -n -p:
# bash 5.1 or newer, as in the image.)
await() {
  local pid=$1 status sleeper="" sleeper_to="" left ended waits=()
  while :; do
    # A job that ended before this wait may be forgotten by `wait -n` (see term_poll and WAIT_TICK); `wait PID` still
    # has its status.
    if ! kill -0 "$pid" 2>/dev/null; then
      status=0
      wait "$pid" 2>/dev/null || status=$?
      break
    fi
    term_poll # (before the sleeper is looked at: on_term may set or move the deadline)
    # The sleeper's tick is over, or the deadline it sleeps to has moved (on_term): at the deadline the job is stopped.
    if [ -n "$sleeper" ] && { ! kill -0 "$sleeper" 2>/dev/null || [ "$sleeper_to" != "$HARD_DEADLINE" ]; }; then
      reap "$sleeper"
      sleeper=""
      if [ -n "$HARD_DEADLINE" ] && [ "$EPOCHSECONDS" -ge "$HARD_DEADLINE" ]; then
        kill_tree KILL "$pid"
        wait "$pid" 2>/dev/null
        status=124
        break
      fi
      continue # (term_poll again, right before the wait: see there)
    fi
    # The deadline may be there from the start, or set by on_term after a SIGTERM just seen. The sleeper sleeps to it
    # in ticks (WAIT_TICK).
    if [ -n "$HARD_DEADLINE" ] && [ -z "$sleeper" ]; then
      left=$((HARD_DEADLINE - EPOCHSECONDS))
      ((left > 0)) || left=0
      if ((left > 10#${WAIT_TICK%.*})); then # (a tick then ends before the deadline; "08" is decimal)
        sleep "$WAIT_TICK" >/dev/null 2>&1 &
      else
        sleep "$left" >/dev/null 2>&1 &
      fi
      sleeper=$!
      sleeper_to=$HARD_DEADLINE
      continue
    fi
    term_waits
    ended=""
    status=0
    wait -n -p ended "$pid" ${sleeper:+"$sleeper"} "${waits[@]}" 2>/dev/null || status=$?
    [ "${ended:-}" != "$pid" ] || break
  done
  [ -z "$sleeper" ] || reap "$sleeper"
  return "$status"
}

# reap PID: SIGKILL to a background job of this shell, then waits for it, silently: a job ended by a signal and never
# waited for is reported by bash on the container's stderr ("line 7: 8249 Killed  sleep "$1""), where it would read as
# an OOM kill. Always returns 0.
reap() {
  kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  return 0
}

# retry_until DEADLINE CMD...: CMD (whose AWS calls retry on their own), and again after 1, 2, 4, 8, 8... seconds while
# it fails and the next try would still start before DEADLINE (epoch seconds); returns CMD's last status.
retry_until() {
  local deadline=$1 delay=1 status
  shift
  while :; do
    run_bounded "$@" && return 0
    status=$?
    if [ $((EPOCHSECONDS + delay)) -gt "$deadline" ] || [ "$status" = 124 ]; then
      return "$status"
    fi
    warn "failed ($(last_error)); trying again in ${delay} s"
    pause "$delay"
    delay=$((delay < 8 ? delay * 2 : 8))
  done
}
