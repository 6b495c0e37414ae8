#!/usr/bin/env bash
# Start a real single-node Slurm cluster (munge + slurmctld + slurmd, no accounting, 2 fake GPUs)
# on this machine, for `pytest -m slurm` and CI. Needs root and Debian/Ubuntu (apt-get).
#
#   bash tests/slurm/start_cluster.sh      # install if missing, configure, start, smoke-check
#   bash tests/slurm/stop_cluster.sh       # stop the daemons (configuration and state are kept)
#
# Idempotent: with the daemons already up and the configuration unchanged it only re-checks.
# Settings (environment): SLURM_CI_GPUS (fake GPUs, default 2), SLURM_CI_STATE (state directory,
# default /var/lib/slurm-ci), SLURM_CI_TIMEOUT (seconds to wait for the node, default 60),
# SLURM_CI_CPUS / SLURM_CI_MEM_MB (the node's advertised size, default 16 CPUs and 65536 MB).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ngpus="${SLURM_CI_GPUS:-2}"
state="${SLURM_CI_STATE:-/var/lib/slurm-ci}"
logdir="$state/log"
gpudir="$state/dev"
timeout="${SLURM_CI_TIMEOUT:-60}"
conf=/etc/slurm/slurm.conf
gresconf=/etc/slurm/gres.conf

say() { printf '[slurm-ci] %s\n' "$*"; }
die() {
    printf '[slurm-ci] ERROR: %s\n' "$*" >&2
    for f in "$logdir/slurmctld.log" "$logdir/slurmd.log" /var/log/munge/munged.log; do
        if [[ -f "$f" ]]; then
            printf '[slurm-ci] ---- last lines of %s ----\n' "$f" >&2
            tail -n 30 "$f" >&2
        fi
    done
    exit 1
}

[[ "$(id -u)" -eq 0 ]] || die "run as root (it installs packages and starts system daemons)"

# --- 1. packages ---------------------------------------------------------------------------------
missing=()
for bin in munged slurmctld slurmd sinfo sbatch; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if ((${#missing[@]})); then
    say "installing munge slurmctld slurmd slurm-client (missing: ${missing[*]})"
    command -v apt-get >/dev/null || die "apt-get not found: install munge and Slurm (slurmctld, slurmd, client) yourself"
    export DEBIAN_FRONTEND=noninteractive
    # Debian's maintainer scripts try to start services; there is no init system here.
    apt-get update -qq || say "apt-get update failed; trying the install with the current lists"
    apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >/dev/null
else
    say "packages present: $(sinfo --version)"
fi

# --- 2. configuration ----------------------------------------------------------------------------
node="$(hostname -s)"
hw_cpus="$(nproc)"
hw_mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
# The node is sized like a small GPU node (16 CPUs, 64 GB, 2 GPUs), not like this machine, so that
# profiles/slurm runs unmodified here, including its attempt-scaled retries (SlurmdParameters=
# config_overrides keeps slurmd from draining a node smaller than configured; nothing is enforced
# without cgroups). SLURM_CI_CPUS=$(nproc) SLURM_CI_MEM_MB=<MB> describe the real machine instead.
cpus="${SLURM_CI_CPUS:-16}"
realmem="${SLURM_CI_MEM_MB:-65536}"
mkdir -p "$state/ctld" "$state/d" "$logdir" "$gpudir" /etc/slurm /run/munge
# slurmd only binds GPUs to jobs (CUDA_VISIBLE_DEVICES) for character devices: make /dev/null twins.
for ((i = 0; i < ngpus; i++)); do
    if [[ ! -c "$gpudir/nvidia$i" ]]; then
        rm -f "$gpudir/nvidia$i"
        mknod -m 0666 "$gpudir/nvidia$i" c 1 3 || ln -sf /dev/null "$gpudir/nvidia$i"
    fi
done

render() {
    sed -e "s|@NODE@|$node|g" -e "s|@CPUS@|$cpus|g" -e "s|@REALMEM@|$realmem|g" \
        -e "s|@NGPUS@|$ngpus|g" -e "s|@LASTGPU@|$((ngpus - 1))|g" \
        -e "s|@STATEDIR@|$state|g" -e "s|@LOGDIR@|$logdir|g" -e "s|@GPUDIR@|$gpudir|g" "$1"
}
changed=0
install_conf() { # template target
    local tmp
    tmp="$(mktemp)"
    render "$1" >"$tmp"
    if [[ -f "$2" ]] && cmp -s "$tmp" "$2"; then
        rm -f "$tmp"
    else
        say "writing $2"
        install -m 0644 "$tmp" "$2"
        rm -f "$tmp"
        changed=1
    fi
}
install_conf "$here/slurm.conf.in" "$conf"
install_conf "$here/gres.conf.in" "$gresconf"
say "node $node: CPUs=$cpus RealMemory=${realmem}MB (hardware: $hw_cpus CPUs, ${hw_mem_mb}MB) Gres=gpu:$ngpus (character devices $gpudir/nvidia*), partition debug"

# --- 3. daemons ----------------------------------------------------------------------------------
running() { # pidfile
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating munge key"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
fi
chown munge:munge /etc/munge/munge.key /run/munge
chmod 0400 /etc/munge/munge.key
mkdir -p /var/lib/munge /var/log/munge
chown munge:munge /var/lib/munge /var/log/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
else
    say "starting munged"
    runuser -u munge -- munged --force
    for _ in $(seq 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.25
    done
    munge -n | unmunge >/dev/null || die "munged does not answer"
fi

if ((changed)) && running "$state/slurmctld.pid"; then
    say "configuration changed: restarting slurmctld and slurmd"
    bash "$here/stop_cluster.sh"
fi

if running "$state/slurmctld.pid"; then
    say "slurmctld already running (pid $(cat "$state/slurmctld.pid"))"
else
    say "starting slurmctld (log $logdir/slurmctld.log)"
    # -c: start clean, without jobs saved from an earlier cluster (stale nodes / jobs confuse tests).
    slurmctld -c || die "slurmctld failed to start"
fi
if running "$state/slurmd.pid"; then
    say "slurmd already running (pid $(cat "$state/slurmd.pid"))"
else
    say "starting slurmd (log $logdir/slurmd.log)"
    slurmd || die "slurmd failed to start"
fi

# --- 4. wait until the node is idle --------------------------------------------------------------
say "waiting up to ${timeout}s for node $node to be idle"
deadline=$((SECONDS + timeout))
while :; do
    nstate="$(sinfo -h -n "$node" -o '%T' 2>/dev/null | head -n1 || true)"
    case "$nstate" in
    idle | mixed | allocated | completing) break ;;
    down* | drain* | fail*)
        # After a restart the node can come back "down" (unexpected reboot); return it to service.
        scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
        ;;
    esac
    ((SECONDS < deadline)) || die "node $node not idle after ${timeout}s (state: '${nstate:-no answer}'; $(sinfo -h -R 2>/dev/null || true))"
    sleep 1
done
sinfo

# --- 5. smoke checks -----------------------------------------------------------------------------
out="$(timeout 60 srun -Q -N1 -t 1 hostname)" || die "srun -N1 hostname failed"
[[ "$out" == "$node" || "$out" == "$(hostname)" ]] || die "srun ran on '$out', expected $node"
say "srun -N1 hostname -> $out"
# shellcheck disable=SC2016 # expanded by the job's shell, not here
out="$(timeout 60 srun -Q -N1 -t 1 --gres=gpu:1 bash -c 'echo "${CUDA_VISIBLE_DEVICES:-unset}"')" ||
    die "srun --gres=gpu:1 failed"
say "srun --gres=gpu:1 -> CUDA_VISIBLE_DEVICES=$out"
[[ "$out" =~ ^[0-9]+$ ]] || die "a GPU job got CUDA_VISIBLE_DEVICES='$out', expected one index"
say "cluster ready: sbatch/srun/squeue/scontrol work (no sacct: accounting is off)"
