# Sourced by scripts/tune_network.sh and scripts/setup_hugepages.sh: our own section of a sysctl.d file,
# rewritten in place (never appended twice). Callers set CONF (the file) and SECTION (the section name).

# The whole new file on stdout: section SECTION replaced where it stands (appended if new), stray lines
# setting one of KEYS_RE's keys outside it dropped, everything else kept as it is.
# Usage: sysctl_section_conf WRITER KEYS_RE LINE...
sysctl_section_conf() {
    local writer=$1 keys_re=$2 section
    shift 2
    section=$(printf '%s\n' "# BEGIN xdpgw $SECTION" \
        "# written by $writer; re-run it instead of editing this section" "$@" "# END xdpgw $SECTION")
    { [ -f "$CONF" ] && cat "$CONF"; true; } | awk -v b="# BEGIN xdpgw $SECTION" -v e="# END xdpgw $SECTION" \
        -v re="^[[:space:]]*($keys_re)[[:space:]]*=" -v sec="$section" '
        $0 == b {skip = 1; if (!done) print sec; done = 1; next}
        $0 == e {skip = 0; next}
        skip || $0 ~ re {next}
        {print}
        END {if (!done) print sec}'
}

# Says whether CONF already holds TEXT; sets CONF_CHANGED to 0 or 1.
sysctl_section_check() {
    if [ -f "$CONF" ] && [ "$1" = "$(cat "$CONF")" ]; then
        echo "persistent: $CONF already up to date"
        CONF_CHANGED=0
    else
        echo "persistent: would rewrite $CONF (section '$SECTION'; see --print-conf)"
        CONF_CHANGED=1
    fi
}

# Replaces CONF by TEXT atomically (mode 644).
sysctl_section_write() {
    local tmp
    mkdir -p "$(dirname "$CONF")"
    tmp=$(mktemp "$CONF.XXXXXX")
    printf '%s\n' "$1" >"$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$CONF"
    echo "applied: wrote $CONF"
}
