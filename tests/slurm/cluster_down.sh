#!/usr/bin/env bash
# Stop the daemons tests/slurm/cluster_up.sh started, by their pid files in the state
# directory (never by name: other SLURM or munge daemons on the machine are left alone).
# Safe to run when nothing is running. Keeps config, key and logs for inspection.
#
# Environment: SCNF_SLURM_DIR (default /tmp/scnf-slurm), SCNF_SLURM_STOP_TIMEOUT (default 30 s).
set -uo pipefail

STATE="${SCNF_SLURM_DIR:-/tmp/scnf-slurm}"
TIMEOUT="${SCNF_SLURM_STOP_TIMEOUT:-30}"
RUN="$STATE/run"
rc=0

log() { echo "[cluster_down] $*"; }

# pid_of NAME PIDFILE: print the pid if the file names a live process called NAME
# (a recycled pid belonging to something else is never signalled); drop stale pid files.
pid_of() {
    local name="$1" pidfile="$2" pid=""
    [[ -s "$pidfile" ]] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    if [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]]; then
        echo "$pid"
        return 0
    fi
    log "$name not running (stale pid file removed)" >&2
    rm -f "$pidfile"
    return 1
}

# stop NAME:PIDFILE...: SIGTERM all at once, wait up to TIMEOUT, then SIGKILL stragglers.
stop() {
    local spec name pidfile pid i alive
    local -a names=() pids=() files=()
    for spec in "$@"; do
        name="${spec%%:*}" pidfile="${spec#*:}"
        pid="$(pid_of "$name" "$pidfile")" || continue
        kill -TERM "$pid" 2>/dev/null
        names+=("$name") pids+=("$pid") files+=("$pidfile")
    done
    for ((i = 0; i < TIMEOUT * 10; i++)); do
        alive=0
        for pid in "${pids[@]}"; do [[ -d "/proc/$pid" ]] && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        pid="${pids[$i]}"
        if [[ -d "/proc/$pid" ]]; then
            log "${names[$i]} (pid $pid) ignored SIGTERM for ${TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            sleep 0.5
            if [[ -d "/proc/$pid" ]]; then
                log "ERROR: ${names[$i]} (pid $pid) still alive"
                rc=1
                continue
            fi
        fi
        log "stopped ${names[$i]} (pid $pid)"
        rm -f "${files[$i]}"
    done
}

# Cancel the jobs of *this* cluster first, so no job step outlives its slurmd.
export SLURM_CONF="$STATE/slurm.conf"
if pid_of slurmctld "$RUN/slurmctld.pid" >/dev/null; then
    jobs="$(timeout 10 squeue -h -o %A 2>/dev/null | tr '\n' ' ')"
    if [[ -n "${jobs// /}" ]]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086  # one argument per job id
        timeout 10 scancel $jobs || true
        for ((i = 0; i < 100; i++)); do
            [[ -z "$(timeout 10 squeue -h -o %A 2>/dev/null)" ]] && break
            sleep 0.1
        done
    fi
fi

# SLURM daemons first (each takes ~2 s to save state and exit), munged last: they
# authenticate through it while shutting down.
stop "slurmd:$RUN/slurmd.pid" "slurmctld:$RUN/slurmctld.pid"
stop "munged:$STATE/munge/munged.pid"
if ((rc == 0)); then
    rm -f "$RUN/started"
fi
exit "$rc"
