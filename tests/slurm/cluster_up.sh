#!/usr/bin/env bash
# Bring up a real single-node SLURM 22.05 cluster (munged + slurmctld + slurmd) for the
# workflow's integration tests. Idempotent: running it twice leaves one set of daemons.
#
# Why a real cluster: the Snakemake SLURM executor builds sbatch lines from rule resources
# (gpu=1 -> --gpus=1, slurm_partition -> -p); only a real slurmctld proves they are accepted.
#
# Environment:
#   SCNF_SLURM_DIR      state directory (default /tmp/scnf-slurm): config, munge key, logs, pids
#   SCNF_SLURM_TIMEOUT  seconds to wait for the cluster to become ready (default 90)
#   SCNF_SLURM_GPUS     number of fake GPUs on the node (default 2)
# Needs root (daemons run as root/munge) and Debian's packages (installed here if missing).
set -euo pipefail

STATE="${SCNF_SLURM_DIR:-/tmp/scnf-slurm}"
TIMEOUT="${SCNF_SLURM_TIMEOUT:-90}"
NGPUS="${SCNF_SLURM_GPUS:-2}"
CONF="$STATE/slurm.conf"
MUNGE_DIR="$STATE/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
RUN="$STATE/run"
LOGS="$STATE/log"
export PATH="$PATH:/usr/sbin:/sbin"
export SLURM_CONF="$CONF"
T0=$SECONDS

log() { echo "[cluster_up] $*"; }

dump_logs() {
    local f
    for f in "$MUNGE_DIR/munged.log" "$LOGS/slurmctld.log" "$LOGS/slurmd.log"; do
        if [[ -f "$f" ]]; then
            echo "----- last lines of $f -----" >&2
            tail -n 25 "$f" >&2
        fi
    done
}

die() {
    echo "[cluster_up] ERROR: $*" >&2
    dump_logs
    exit 1
}

# --- preconditions ---------------------------------------------------------------------------
[[ "$(uname -s)" == Linux ]] || die "SLURM test cluster needs Linux"
[[ "$(id -u)" -eq 0 ]] || die "must run as root (slurmd and munged are started directly)"

install_packages() {
    local missing=0 bin
    for bin in munged slurmctld slurmd sbatch squeue sinfo scontrol; do
        command -v "$bin" >/dev/null 2>&1 || missing=1
    done
    ((missing)) || return 0
    command -v apt-get >/dev/null 2>&1 || die "SLURM binaries missing and no apt-get to install them"
    mkdir -p "$STATE"
    log "installing munge slurmctld slurmd slurm-client (log: $STATE/apt.log)"
    # Without systemd the packages' postinst would try to start daemons against a missing
    # /etc/slurm/slurm.conf; a temporary policy-rc.d (exit 101) forbids that, as Docker does.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    local pkgs=(munge slurmctld slurmd slurm-client) rc=0
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${pkgs[@]}" >"$STATE/apt.log" 2>&1 || {
        apt-get update -q >>"$STATE/apt.log" 2>&1 || true
        apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>"$STATE/apt.log" 2>&1 || rc=$?
    }
    ((made_policy)) && rm -f "$policy"
    if ((rc != 0)); then
        tail -n 20 "$STATE/apt.log" >&2
        die "apt-get install failed (rc=$rc)"
    fi
}

# Is the daemon whose pid file is $1 alive and named $2? (guards against recycled pids)
alive() {
    local pidfile="$1" name="$2" pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]]
}

write_if_changed() {  # write stdin to $1 only when the content differs; echo 1 if it changed
    local dst="$1" tmp
    tmp="$(mktemp "$dst.XXXXXX")"
    cat >"$tmp"
    if [[ -f "$dst" ]] && cmp -s "$tmp" "$dst"; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$dst"
        CONFIG_CHANGED=1
    fi
}

install_packages
id munge >/dev/null 2>&1 || die "user 'munge' missing (is the munge package installed?)"

mkdir -p "$STATE" "$RUN" "$LOGS" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/dev" "$MUNGE_DIR"
chmod 755 "$STATE"
chown munge:munge "$MUNGE_DIR"
chmod 755 "$MUNGE_DIR"  # munged: socket dir must be executable by all

# --- munge key --------------------------------------------------------------------------------
if [[ ! -s "$MUNGE_DIR/munge.key" ]]; then
    dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
fi
chown munge:munge "$MUNGE_DIR/munge.key"
chmod 400 "$MUNGE_DIR/munge.key"

# --- fake GPUs: character devices equal to /dev/null (major 1, minor 3) -----------------------
# gres.conf needs one device file per GPU; Count= without File= drains the node.
for ((i = 0; i < NGPUS; i++)); do
    [[ -c "$STATE/dev/gpu$i" ]] || mknod "$STATE/dev/gpu$i" c 1 3
done

# --- slurm.conf / gres.conf -------------------------------------------------------------------
# Copy the node topology slurmd detects (a bare CPUs=N makes slurmd complain and reconfigure).
NODE_LINE="$(timeout 20 slurmd -C | head -n 1)" || die "slurmd -C failed"
NODE="$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$NODE_LINE")"
[[ -n "$NODE" ]] || die "cannot parse node name from: $NODE_LINE"
REAL_MB="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")"
MEM_MB=$((REAL_MB * 9 / 10))  # a bit under the real, so slurmd never reports too little
TOPOLOGY="$(sed -e 's/^NodeName=[^ ]* //' -e 's/ *RealMemory=[0-9]*//' <<<"$NODE_LINE")"
GPU_LAST=$((NGPUS - 1))

CONFIG_CHANGED=0
write_if_changed "$CONF" <<EOF
# Generated by tests/slurm/cluster_up.sh; single-node test cluster, no accounting.
ClusterName=scnf
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# No systemd and no cgroups in the container: track processes by parent pid, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job without --mem takes the node's whole memory.
DefMemPerCPU=512
# Finished jobs stay visible to squeue for 5 min: the Snakemake plugin needs
# MinJobAge >= 3 x slurm-init-seconds-before-status-checks to poll with squeue.
MinJobAge=300
ReturnToService=2
KillWait=5
MailProg=/bin/true
GresTypes=gpu
NodeName=$NODE $TOPOLOGY RealMemory=$MEM_MB Gres=gpu:$NGPUS State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF

write_if_changed "$STATE/gres.conf" <<EOF
# Fake GPUs: device files equal to /dev/null; no NVML autodetection.
AutoDetect=off
Name=gpu File=$STATE/dev/gpu[0-$GPU_LAST]
EOF

# --- daemons ----------------------------------------------------------------------------------
# SLURM's ports are fixed (6817 slurmctld, 6818 slurmd): one test cluster per machine.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! alive "$RUN/slurmctld.pid" slurmctld && port_busy 6817; then
    die "port 6817 is taken by another slurmctld (another state dir?); stop that cluster first"
fi
if ! alive "$RUN/slurmd.pid" slurmd && port_busy 6818; then
    die "port 6818 is taken by another slurmd (another state dir?); stop that cluster first"
fi

touch "$RUN/started"
mark_started() { grep -qx "$1" "$RUN/started" || echo "$1" >>"$RUN/started"; }

if alive "$MUNGE_DIR/munged.pid" munged; then
    log "munged already running (pid $(cat "$MUNGE_DIR/munged.pid"))"
else
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    runuser -u munge -- munged \
        --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" || die "munged failed to start"
    mark_started munged
    log "started munged"
fi
for ((i = 0; i < 50; i++)); do
    [[ -S "$MUNGE_SOCKET" ]] && break
    sleep 0.1
done
munge -n --socket="$MUNGE_SOCKET" | unmunge --socket="$MUNGE_SOCKET" >/dev/null 2>&1 \
    || die "munge credential round trip failed"

if ((CONFIG_CHANGED)) && { alive "$RUN/slurmctld.pid" slurmctld || alive "$RUN/slurmd.pid" slurmd; }; then
    log "configuration changed while daemons run: run cluster_down.sh first to apply it"
fi

# start_daemon NAME: start slurmctld or slurmd with our config unless its pid file names a live one.
start_daemon() {
    if alive "$RUN/$1.pid" "$1"; then
        log "$1 already running (pid $(cat "$RUN/$1.pid"))"
    else
        "$1" -f "$CONF" || die "$1 failed to start"
        mark_started "$1"
        log "started $1"
    fi
}
start_daemon slurmctld
start_daemon slurmd

# --- wait for readiness -----------------------------------------------------------------------
deadline=$((SECONDS + TIMEOUT))
until timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; do
    ((SECONDS < deadline)) || die "slurmctld did not answer 'scontrol ping' within ${TIMEOUT}s"
    sleep 0.5
done

state=""
while true; do
    state="$(timeout 10 sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n 1 || true)"
    case "$state" in
        idle | mixed | allocated | completing) break ;;
        *drain* | down*)
            # e.g. after an earlier misconfiguration; the config is correct now, so resume.
            log "node $NODE is '$state'; resuming it"
            timeout 10 scontrol update nodename="$NODE" state=resume || true
            ;;
    esac
    ((SECONDS < deadline)) || die "node $NODE not idle within ${TIMEOUT}s (state '${state:-none}')"
    sleep 0.5
done

# Client commands (sbatch, squeue, also inside jobs) read /etc/slurm/slurm.conf unless
# SLURM_CONF is set. Point it at ours, but never replace a real site configuration.
mkdir -p /etc/slurm
if [[ ! -e /etc/slurm/slurm.conf || -L /etc/slurm/slurm.conf ]]; then
    ln -sfn "$CONF" /etc/slurm/slurm.conf
else
    log "WARNING: /etc/slurm/slurm.conf is a real file; export SLURM_CONF=$CONF for clients"
fi

log "ready in $((SECONDS - T0))s: node $NODE ($state), state dir $STATE"
timeout 10 sinfo -o '%P %a %D %T %c %m %G' | sed 's/^/[cluster_up]   /'
log "clients: export SLURM_CONF=$CONF"
