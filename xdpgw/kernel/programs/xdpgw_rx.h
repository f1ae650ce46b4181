/* The XDP program's ABI: what xdpgw_rx.c (compiled by BCC at run time, which finds this header beside
 * it) shares with user space. Also read as a cffi cdef (xdpgw/_native/bpfobj_build.py), so Python takes
 * the counter layout and names, config slots and guard flags from lib (xdpgw.kernel.program), and
 * #included by xdpgw/_native/xsk.c for the receive metadata. Plain declarations only: no #include.
 */

#define XGW_META_MAGIC 0x58475731 /* "XGW1": struct xgw_meta is valid */
#define XGW_MAX_QUEUES 64

/* Written by the program in the XDP metadata area, right in front of the packet; read by xsk.c. */
struct xgw_meta {
    uint64_t rx_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    uint32_t magic;
    uint32_t flags;
};

/* Counter slots, per RX queue (index = queue * XGW_NCOUNTERS + slot). Python names them by the enum
 * (C_SEEN -> "seen"), in this order. */
enum xgw_counter {
    C_SEEN,          /* every packet the program ran on */
    C_REDIRECTED,    /* feed packets handed to the AF_XDP socket */
    C_PASSED,        /* packets given to the kernel (non-feed, unparsed, fallback) */
    C_MALFORMED,     /* truncated headers, bad IHL, UDP length lying */
    C_NO_SOCKET,     /* feed packets passed because this queue has no socket */
    C_DENIED,        /* feed packets from a source not on the allowlist */
    C_RATE_LIMITED,  /* feed packets over the per-source rate cap (dropped) */
    C_NO_META,       /* feed packets redirected without a timestamp */
    C_STALE,         /* feed packets passed because the consumer's heartbeat is stale (watchdog) */
    C_CONSUMER_GONE, /* feed packets passed because the queue's consumer process died (death notice); once
                      * its socket is closed too, such packets also count as C_NO_SOCKET */
    XGW_NCOUNTERS
};

/* Slots of the `config` array map. */
enum xgw_config {
    CFG_FLAGS, CFG_RATE_INTERVAL_NS, CFG_RATE_BURST_NS, CFG_WATCHDOG_NS,
    CFG_PIDNS_DEV, CFG_PIDNS_INO, /* consumers' pid namespace (0: the root one) */
    CFG_TASK_TGID_OFF,            /* 1 + offsetof(struct task_struct, tgid) from the kernel's BTF (0: unknown) */
    CFG_N
};

/* Bits of config[CFG_FLAGS]: the hostile-input guards. */
enum xgw_guard_flag {
    FLAG_ALLOWLIST = 1,  /* only sources in `allowed_src` are redirected */
    FLAG_DENY_DROP = 2,  /* with FLAG_ALLOWLIST: drop others (default: pass them to the kernel) */
    FLAG_RATE_CAP = 4,   /* per-source rate cap (GCRA: interval and burst tolerance in ns) */
    FLAG_WATCHDOG = 8,   /* pass the feed when the queue's consumer heartbeat is older than the limit */
};
