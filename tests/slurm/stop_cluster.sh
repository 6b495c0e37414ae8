#!/usr/bin/env bash
# Stop the single-node CI Slurm started by tests/slurm/start_cluster.sh: slurmd, slurmctld and
# (with --all) munged. Configuration, state and logs stay in place. Idempotent.
set -euo pipefail

state="${SLURM_CI_STATE:-/var/lib/slurm-ci}"
say() { printf '[slurm-ci] %s\n' "$*"; }

stop() { # name pidfile
    local name="$1" pidfile="$2" pid
    if [[ -s "$pidfile" ]] && pid="$(cat "$pidfile")" && kill -0 "$pid" 2>/dev/null; then
        say "stopping $name (pid $pid)"
        kill "$pid"
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name did not stop in 10s; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    else
        say "$name not running"
    fi
}

stop slurmd "$state/slurmd.pid"
stop slurmctld "$state/slurmctld.pid"
if [[ "${1:-}" == "--all" ]]; then
    stop munged /run/munge/munged.pid
fi
