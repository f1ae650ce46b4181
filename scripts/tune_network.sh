#!/usr/bin/env bash
# Network tuning for xdpgw: prints current -> wanted for every setting; changes nothing without --apply.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/tune_network.sh [--apply] [--no-gro] [--print-conf] [IFACE]

Shows what it would change (current -> wanted) and applies it only with --apply (as root).
  sysctls   net.core.rmem_max/wmem_max 64 MiB, rmem_default/wmem_default 8 MiB,
            netdev_budget 600, netdev_budget_usecs 8000, netdev_max_backlog 250000,
            busy_poll/busy_read 50 us.  Values already higher are kept (never lowered).
            Persistent copy: /etc/sysctl.d/90-xdpgw.conf (its "tune_network" section is
            rewritten whole; other lines are kept; re-running adds no duplicates).
  IFACE     ring sizes to the driver maximum (ethtool -G), and with --no-gro: GRO/LRO off
            on that interface only. Ring/offload settings do not survive a reboot.
  --print-conf  print the sysctl.d file as it would be written, and exit.
Environment: XDPGW_SYSCTL_CONF overrides the sysctl.d file path.
EOF
}

CONF=${XDPGW_SYSCTL_CONF:-/etc/sysctl.d/90-xdpgw.conf}
SECTION=tune_network
# shellcheck source=scripts/sysctl_section.sh
. "$(dirname "$0")/sysctl_section.sh"
APPLY=0 NO_GRO=0 PRINT_CONF=0 IFACE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --apply) APPLY=1 ;;
        --no-gro) NO_GRO=1 ;;
        --print-conf) PRINT_CONF=1 ;;
        -h | --help) usage; exit 0 ;;
        -*) echo "tune_network: unknown option $1: see scripts/tune_network.sh --help" >&2; exit 2 ;;
        *) [ -z "$IFACE" ] || { echo "tune_network: one IFACE only: see --help" >&2; exit 2; }
           IFACE=$1 ;;
    esac
    shift
done
if [ "$APPLY" = 1 ] && [ "$(id -u)" != 0 ]; then
    echo "tune_network: --apply changes kernel settings: run as root: sudo $0 $*" >&2
    exit 1
fi
if [ -n "$IFACE" ] && [ ! -e "/sys/class/net/$IFACE" ]; then
    echo "tune_network: no interface '$IFACE': list them with: ip -br link" >&2
    exit 1
fi

KEYS=(net.core.rmem_max net.core.wmem_max net.core.rmem_default net.core.wmem_default
      net.core.netdev_budget net.core.netdev_budget_usecs net.core.netdev_max_backlog
      net.core.busy_poll net.core.busy_read)
WANT=(67108864 67108864 8388608 8388608 600 8000 250000 50 50)

say() { [ "$PRINT_CONF" = 1 ] || echo "$@"; }

# Conf lines: wanted values, or the current one where it is already higher.
SECTION_LINES=() CHANGES=()
for i in "${!KEYS[@]}"; do
    key=${KEYS[$i]} want=${WANT[$i]}
    cur=$(sysctl -n "$key" 2>/dev/null || echo "?")
    if [ "$cur" = "?" ]; then
        say "sysctl $key: not present on this kernel (skipped)"
        continue
    fi
    if [ "$cur" -ge "$want" ]; then
        say "sysctl $key: $cur (already >= $want)"
        SECTION_LINES+=("$key = $cur")
    else
        say "sysctl $key: $cur -> $want"
        SECTION_LINES+=("$key = $want")
        CHANGES+=("$key=$want")
    fi
done

# The whole new conf file: our section replaced where it stands (appended if new); stray lines that set
# our keys outside it are dropped; everything else is kept as it is.
new_conf() {
    sysctl_section_conf scripts/tune_network.sh "$(printf '%s|' "${KEYS[@]}" | sed 's/\./\\./g; s/|$//')" \
        "${SECTION_LINES[@]}"
}

if [ "$PRINT_CONF" = 1 ]; then
    new_conf
    exit 0
fi

conf_text=$(new_conf)
sysctl_section_check "$conf_text"

# Per-interface settings (not persistent).
IFACE_CMDS=()
if [ -n "$IFACE" ]; then
    if ! command -v ethtool >/dev/null; then
        echo "ethtool missing: apt-get install ethtool (needed for ring sizes and offloads)"
    else
        rings=$(ethtool -g "$IFACE" 2>/dev/null || true)
        if [ -z "$rings" ]; then
            echo "$IFACE rings: driver does not report ring sizes (skipped)"
        else
            # First RX:/TX: lines are the pre-set maximums, the second ones the current settings.
            read -r max_rx cur_rx <<<"$(awk '/^RX:/ {printf "%s ", $2}' <<<"$rings")"
            read -r max_tx cur_tx <<<"$(awk '/^TX:/ {printf "%s ", $2}' <<<"$rings")"
            if [ "$cur_rx" = "$max_rx" ] && [ "$cur_tx" = "$max_tx" ]; then
                echo "$IFACE rings: rx $cur_rx tx $cur_tx (already at max)"
            else
                echo "$IFACE rings: rx $cur_rx -> $max_rx, tx $cur_tx -> $max_tx"
                IFACE_CMDS+=("ethtool -G $IFACE rx $max_rx tx $max_tx")
            fi
        fi
        feats=$(ethtool -k "$IFACE" 2>/dev/null || true)
        gro=$(awk '/^generic-receive-offload:/ {print $2}' <<<"$feats")
        lro=$(awk '/^large-receive-offload:/ {print $2 ($3 == "[fixed]" ? " [fixed]" : "")}' <<<"$feats")
        if [ "$NO_GRO" = 1 ]; then
            off=()
            [ "$gro" = on ] && off+=(gro off)
            [ "$lro" = on ] && off+=(lro off)
            if [ ${#off[@]} -gt 0 ]; then
                echo "$IFACE offloads: gro $gro, lro ${lro:-n/a} -> off"
                IFACE_CMDS+=("ethtool -K $IFACE ${off[*]}")
            else
                echo "$IFACE offloads: gro ${gro:-n/a}, lro ${lro:-n/a} (already off or fixed)"
            fi
        else
            echo "$IFACE offloads: gro ${gro:-n/a}, lro ${lro:-n/a} (unchanged; --no-gro turns them off)"
        fi
    fi
    if pgrep -x irqbalance >/dev/null 2>&1; then
        echo "note: irqbalance is running and moves $IFACE's IRQs: systemctl stop irqbalance" \
             "(or IRQBALANCE_BANNED_CPUS in /etc/default/irqbalance), then pin them: xdpgw doctor $IFACE"
    fi
fi

if [ "$APPLY" = 0 ]; then
    n=$(( ${#CHANGES[@]} + ${#IFACE_CMDS[@]} + CONF_CHANGED ))
    if [ "$n" = 0 ]; then
        echo "nothing to change"
    else
        opts=""
        [ "$NO_GRO" = 1 ] && opts=" --no-gro"
        echo "dry run: nothing changed; apply with:" \
             "sudo scripts/tune_network.sh --apply$opts${IFACE:+ $IFACE}"
    fi
    exit 0
fi

for kv in "${CHANGES[@]}"; do
    sysctl -q -w "$kv"
    echo "applied: sysctl -w $kv"
done
[ "$CONF_CHANGED" = 0 ] || sysctl_section_write "$conf_text"
for cmd in "${IFACE_CMDS[@]}"; do
    $cmd
    echo "applied: $cmd (not persistent: re-run after reboot, e.g. from a udev rule or ifupdown post-up)"
done
