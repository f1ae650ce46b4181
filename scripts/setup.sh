#!/usr/bin/env bash
# Idempotent set-up for xdpgw on Debian 12 (run as root). Used by both README commands.
#  1. Debian packages (libxdp/libbpf, BCC's python3-bpfcc, kernel headers, iproute2, tshark, ...)
#  2. BCC's kernel-header fix when /lib/modules/$(uname -r)/build is missing
#  3. bpffs mounted at /sys/fs/bpf
#  4. .venv from Debian's /usr/bin/python3 with --system-site-packages (so `import bcc` works:
#     bcc is not on PyPI), then `pip install -e .[test,plot,metrics,fix]`, which builds the cffi
#     extensions (xdpgw/_native); the `fix` extra is the QuickFIX engine (quickfix 1.16, C++ built from
#     source once, ~6-15 min on 2 busy cores; later runs install pip's cached wheel in seconds).
# Re-running it does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (XDP, AF_XDP and apt need it): sudo $0"

# --- 1. Debian packages ------------------------------------------------------------------------
PKGS=(libxdp-dev libbpf-dev python3-bpfcc bpfcc-tools linux-headers-amd64 iproute2 ethtool
      python3-venv python3-dev gcc g++ pkg-config tshark git iputils-ping)  # g++: the FIX engine (quickfix)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer once, non-interactively.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq || die "apt-get update failed: check the network / Debian mirror, then re-run"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed: see the apt output above, fix it, then re-run"
fi

# --- 2. kernel headers for BCC -----------------------------------------------------------------
KDIR=/lib/modules/$(uname -r)
if [ ! -e "$KDIR/build" ]; then
    hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
    common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)
    [ -n "$hdr" ] && [ -n "$common" ] || die "no /usr/src/linux-headers-*: apt-get install linux-headers-amd64"
    say "no headers for $(uname -r): linking $hdr (UAPI structs for XDP are stable)"
    mkdir -p "$KDIR"
    ln -sfn "$hdr" "$KDIR/build"
    [ -e "$KDIR/source" ] || ln -sfn "$common" "$KDIR/source"
fi

# --- 3. bpffs ----------------------------------------------------------------------------------
if ! mountpoint -q /sys/fs/bpf; then
    say "mounting bpffs at /sys/fs/bpf"
    mount -t bpf bpf /sys/fs/bpf || die "cannot mount bpffs: mount -t bpf bpf /sys/fs/bpf"
fi

# --- 4. virtual environment --------------------------------------------------------------------
VENV=$ROOT/.venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import bcc' 2>/dev/null; then
    say "creating $VENV from /usr/bin/python3 with --system-site-packages (for Debian's bcc)"
    rm -rf "$VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
# Rebuild only when what the build reads has changed.
NATIVE="xdpgw._native._xsk, xdpgw._native._net, xdpgw._native._mold, xdpgw._native._bpfobj, xdpgw._native._blast, xdpgw._native._book"
stamp=$(cat pyproject.toml setup.py xdpgw/_native/*.py xdpgw/_native/*.[ch] xdpgw/kernel/programs/*.h | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.xdpgw-stamp" 2>/dev/null)" != "$stamp" ] || ! "$VENV/bin/python" -c "import $NATIVE" 2>/dev/null; then
    say "pip install -e .[test,plot,metrics,fix] (builds the cffi extensions in xdpgw/_native; the first time also the FIX engine quickfix from source: ~6-15 min)"
    "$VENV/bin/pip" install -q -e ".[test,plot,metrics,fix]" \
        || die "pip install -e . failed: read the compiler output above (is libxdp-dev installed?)"
    echo "$stamp" > "$VENV/.xdpgw-stamp"
fi
"$VENV/bin/python" -c 'import quickfix' || die "the venv cannot import quickfix (the FIX engine): apt-get install g++ python3-dev, then re-run"
"$VENV/bin/python" -c "import bcc, $NATIVE" || die "the venv cannot import bcc and $NATIVE: rm -rf .venv and re-run"
[ -x "$VENV/bin/xdpgw" ] || die ".venv/bin/xdpgw missing after install: rm -rf .venv and re-run"
say "ready: $VENV/bin/xdpgw"
