#!/usr/bin/env bash
# 2 MiB huge pages for the AF_XDP UMEM: prints current -> wanted; changes nothing without --apply.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/setup_hugepages.sh [--pages N] [--mount [DIR]] [--apply] [--print-conf]

Reserves N huge pages of the default size (2 MiB on x86_64; default N = 512, i.e. 1 GiB) via
vm.nr_hugepages, and with --mount also mounts hugetlbfs at DIR (default /dev/hugepages) when
nothing is mounted there. Shows current -> wanted and applies only with --apply (as root).
Persistent copy: /etc/sysctl.d/90-xdpgw.conf (its "hugepages" section is rewritten whole;
other lines are kept; re-running adds no duplicates).
  --print-conf  print the sysctl.d file as it would be written, and exit.
Environment: XDPGW_SYSCTL_CONF overrides the sysctl.d file path.
EOF
}

CONF=${XDPGW_SYSCTL_CONF:-/etc/sysctl.d/90-xdpgw.conf}
SECTION=hugepages
# shellcheck source=scripts/sysctl_section.sh
. "$(dirname "$0")/sysctl_section.sh"
KEY=vm.nr_hugepages
PAGES=512 APPLY=0 MOUNT="" PRINT_CONF=0
while [ $# -gt 0 ]; do
    case "$1" in
        --apply) APPLY=1 ;;
        --pages) [ $# -ge 2 ] || { echo "setup_hugepages: --pages needs a number: --pages 512" >&2; exit 2; }
                 PAGES=$2; shift ;;
        --pages=*) PAGES=${1#--pages=} ;;
        --mount) MOUNT=/dev/hugepages
                 if [ $# -ge 2 ] && [ "${2#-}" = "$2" ]; then MOUNT=$2; shift; fi ;;
        --print-conf) PRINT_CONF=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "setup_hugepages: unknown argument $1: see scripts/setup_hugepages.sh --help" >&2; exit 2 ;;
    esac
    shift
done
case "$PAGES" in
    '' | *[!0-9]*) echo "setup_hugepages: --pages wants a whole number, got '$PAGES': e.g. --pages 512" >&2
                   exit 2 ;;
esac
if [ "$APPLY" = 1 ] && [ "$(id -u)" != 0 ]; then
    echo "setup_hugepages: --apply changes kernel settings: run as root: sudo $0 $*" >&2
    exit 1
fi

meminfo() { awk -v k="$1:" '$1 == k {print $2}' /proc/meminfo; }
size_kb=$(meminfo Hugepagesize)
cur=$(sysctl -n "$KEY")

# The whole new conf file: our section replaced where it stands (appended if new); stray lines that set
# vm.nr_hugepages outside it are dropped; everything else is kept as it is.
new_conf() {
    sysctl_section_conf scripts/setup_hugepages.sh 'vm\.nr_hugepages' "$KEY = $PAGES"
}
if [ "$PRINT_CONF" = 1 ]; then
    new_conf
    exit 0
fi

note=""
[ "$size_kb" = 2048 ] || note=" (not 2 MiB: N pages = N x ${size_kb} kB)"
echo "huge page size: ${size_kb} kB$note"
echo "reserved now: $(meminfo HugePages_Total) total, $(meminfo HugePages_Free) free"
CHANGE=0
if [ "$cur" = "$PAGES" ]; then
    echo "sysctl $KEY: $cur (already)"
else
    echo "sysctl $KEY: $cur -> $PAGES ($(( PAGES * size_kb / 1024 )) MiB)"
    CHANGE=1
fi
conf_text=$(new_conf)
sysctl_section_check "$conf_text"
MOUNT_NEEDED=0
if [ -n "$MOUNT" ]; then
    if [ "$(findmnt -n -o FSTYPE --target "$MOUNT" 2>/dev/null || true)" = hugetlbfs ] \
        && mountpoint -q "$MOUNT" 2>/dev/null; then
        echo "hugetlbfs: already mounted at $MOUNT"
    else
        echo "hugetlbfs: would mount at $MOUNT (mount -t hugetlbfs -o pagesize=${size_kb}K none $MOUNT)"
        MOUNT_NEEDED=1
    fi
fi

if [ "$APPLY" = 0 ]; then
    if [ $(( CHANGE + CONF_CHANGED + MOUNT_NEEDED )) = 0 ]; then
        echo "nothing to change"
    else
        echo "dry run: nothing changed; apply with:" \
             "sudo scripts/setup_hugepages.sh --apply --pages $PAGES${MOUNT:+ --mount $MOUNT}"
    fi
    exit 0
fi

if [ "$CHANGE" = 1 ]; then
    sysctl -q -w "$KEY=$PAGES"
    got=$(meminfo HugePages_Total)
    echo "applied: sysctl -w $KEY=$PAGES (kernel reserved $got)"
    if [ "$got" -lt "$PAGES" ]; then
        echo "warning: memory is fragmented, only $got of $PAGES pages reserved: free some with" \
             "'sync; echo 3 > /proc/sys/vm/drop_caches; echo 1 > /proc/sys/vm/compact_memory', re-run," \
             "or reserve at boot: add hugepages=$PAGES to GRUB_CMDLINE_LINUX in /etc/default/grub," \
             "then update-grub" >&2
    fi
fi
[ "$CONF_CHANGED" = 0 ] || sysctl_section_write "$conf_text"
if [ "$MOUNT_NEEDED" = 1 ]; then
    mkdir -p "$MOUNT"
    mount -t hugetlbfs -o "pagesize=${size_kb}K" none "$MOUNT"
    echo "applied: mounted hugetlbfs at $MOUNT (persistent: add" \
         "'none $MOUNT hugetlbfs pagesize=${size_kb}K 0 0' to /etc/fstab)"
fi
