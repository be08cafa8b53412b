#!/usr/bin/env bash
# A single-node SLURM on this machine, for testing the slurm/ scripts for real (as root, no
# systemd or cgroups needed):
#   scripts/slurm-local.sh install   # Debian packages slurmctld slurmd slurm-client munge
#   scripts/slurm-local.sh start     # munged, slurmctld, slurmd; waits until the node is idle
#   scripts/slurm-local.sh stop      # cancels jobs, stops the daemons it started (pid files)
# It writes /etc/slurm/slurm.conf (partition `debug`, all CPUs, memory − 1 GiB).
set -euo pipefail
STATE=/run/sitdiv-slurm          # pid files of what this script started

install_packages() {
    command -v slurmctld >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null && return 0
    local pkgs="slurmctld slurmd slurm-client munge"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkgs >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkgs >/dev/null
    }
}

start() {
    [ "$(id -u)" = 0 ] || { echo "slurm-local.sh: needs root" >&2; exit 1; }
    install_packages
    install -d -m 0755 "$STATE"
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge /etc/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- /usr/sbin/munged
        echo /run/munge/munged.pid > "$STATE/munged"
    fi
    for _ in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    install -d -m 0755 /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm /etc/slurm
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=512
ReturnToService=2
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
    if ! pgrep -x slurmctld >/dev/null; then
        slurmctld -i
        echo /run/slurm/slurmctld.pid > "$STATE/slurmctld"
    fi
    if ! pgrep -x slurmd >/dev/null; then
        slurmd
        echo /run/slurm/slurmd.pid > "$STATE/slurmd"
    fi
    local st=""
    for _ in $(seq 120); do
        st=$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)
        [ "$st" = idle ] && break
        sleep 0.5
    done
    echo "slurm-local: node $host ($cpus CPUs, ${mem} MB) is ${st:-unknown}"
    [ "$st" = idle ]
}

stop() {
    scancel --user="$(id -un)" 2>/dev/null || true
    for d in slurmd slurmctld munged; do
        if [ -s "$STATE/$d" ]; then
            pf=$(cat "$STATE/$d")
            [ -s "$pf" ] && kill "$(cat "$pf")" 2>/dev/null || true
            rm -f "$STATE/$d"
        fi
    done
    for _ in $(seq 50); do
        pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break
        sleep 0.2
    done
    echo "slurm-local: stopped"
}

case "${1:-}" in
    install) install_packages ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
