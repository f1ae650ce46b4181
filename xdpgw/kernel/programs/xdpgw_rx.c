/*
 * xdpgw receive program (compiled and attached by BCC at run time).
 *
 * Feed packets (UDP destination port in `feed_ports`) are stamped with bpf_ktime_get_ns() in the XDP
 * metadata area and redirected to the AF_XDP socket of their RX queue (`xsks[rx_queue_index]`).
 * If that queue has no socket the redirect falls back to XDP_PASS: a crashed consumer never
 * black-holes the feed. Everything else, and anything we cannot parse, goes to the kernel.
 *
 * Optional hostile-input guards (config[CFG_FLAGS]): a source allowlist and a per-source rate cap.
 *
 * Death notice: a SIGKILLed consumer's socket leaves the XSKMAP only when the kernel closes its files,
 * after tearing down its whole address space (15-60 ms for Python + BCC). The tracing programs at the
 * end of this file fire at the very start of a registered consumer process's death and mark its queues
 * `dead`; the XDP program then passes their feed to the kernel at once (C_CONSUMER_GONE).
 */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>

#include "xdpgw_rx.h" /* the ABI shared with user space: metadata, counters, config slots, guard flags */

struct src_key {
    u32 addr[4]; /* IPv6, or IPv4-mapped ::ffff:a.b.c.d */
};

BPF_XSKMAP(xsks, XGW_MAX_QUEUES);
BPF_HASH(feed_ports, u16, u8, 64);                          /* UDP dst port (host order) -> 1 */
BPF_PERCPU_ARRAY(counters, u64, XGW_MAX_QUEUES * XGW_NCOUNTERS);
BPF_ARRAY(config, u64, CFG_N);
BPF_HASH(allowed_src, struct src_key, u8, 1024);
BPF_TABLE("lru_hash", struct src_key, u64, src_tat, 65536); /* GCRA theoretical arrival time */
/* Per-queue consumer heartbeat (CLOCK_MONOTONIC ns), written by the consumer through mmap. */
BPF_F_TABLE("array", int, u64, heartbeat, XGW_MAX_QUEUES, BPF_F_MMAPABLE);
/* Death notice: consumer process (tgid in the pid namespace CFG_PIDNS_*, root if unset) -> bit mask of
 * its queues; per queue, bpf_ktime_get_ns() of its consumer's death notice (0: alive). */
BPF_HASH(consumers, u32, u64, 1024);
BPF_ARRAY(dead, u64, XGW_MAX_QUEUES);

static __always_inline void COUNT(u32 q, int slot)
{
    int k = (int)(q * XGW_NCOUNTERS + slot);
    u64 *c = counters.lookup(&k);
    if (c)
        *c += 1;
}

struct vlan_hdr_ {
    __be16 tci;
    __be16 proto;
};

int xdpgw_rx(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    u32 q = ctx->rx_queue_index;
    struct src_key src = {};
    u64 off = sizeof(struct ethhdr);
    u16 proto;

    if (q >= XGW_MAX_QUEUES)
        q = XGW_MAX_QUEUES - 1; /* counters only; the redirect below uses the real index */
    COUNT(q, C_SEEN);

    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        goto malformed;
    proto = eth->h_proto;
    if (proto == htons(ETH_P_8021Q) || proto == htons(ETH_P_8021AD)) {
        struct vlan_hdr_ *vh = data + off;
        if ((void *)(vh + 1) > data_end)
            goto malformed;
        proto = vh->proto;
        off += sizeof(*vh);
    }

    /* Bytes the IP header says follow it (the UDP datagram, as we never go past extension headers). */
    u32 l3_payload;
    if (proto == htons(ETH_P_IP)) {
        struct iphdr *ip = data + off;
        if ((void *)(ip + 1) > data_end)
            goto malformed;
        if (ip->version != 4 || ip->ihl < 5)
            goto malformed;
        if (ip->protocol != IPPROTO_UDP)
            goto pass;
        if (ip->frag_off & htons(0x3fff)) /* MF or fragment offset: the kernel reassembles */
            goto pass;
        u16 tot_len = ntohs(ip->tot_len);
        l3_payload = tot_len >= ip->ihl * 4 ? tot_len - ip->ihl * 4 : 0;
        if ((void *)ip + tot_len > data_end) /* total length claims more than the frame holds */
            l3_payload = 0;
        src.addr[2] = htonl(0xffff);
        src.addr[3] = ip->saddr;
        off += ip->ihl * 4;
    } else if (proto == htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = data + off;
        if ((void *)(ip6 + 1) > data_end)
            goto malformed;
        if (ip6->version != 6)
            goto malformed;
        if (ip6->nexthdr != IPPROTO_UDP) /* extension headers: the kernel's business */
            goto pass;
        u16 plen = ntohs(ip6->payload_len);
        l3_payload = (void *)(ip6 + 1) + plen > data_end ? 0 : plen;
        __builtin_memcpy(src.addr, &ip6->saddr, sizeof(src.addr));
        off += sizeof(*ip6);
    } else {
        goto pass;
    }

    if (off > 14 + 4 + 60) /* keeps the verifier's range for `off` small */
        goto malformed;
    struct udphdr *udp = data + off;
    if ((void *)(udp + 1) > data_end)
        goto malformed;
    u16 dport = ntohs(udp->dest);
    u8 *is_feed = feed_ports.lookup(&dport);
    if (!is_feed)
        goto pass;
    /* The IP length must fit the frame (else l3_payload is 0) and hold the whole UDP datagram, which is at
     * least its header: anything else is lying, and the kernel judges (and drops) it. */
    u16 ulen = ntohs(udp->len);
    if (ulen < sizeof(*udp) || ulen > l3_payload || (void *)udp + ulen > data_end)
        goto malformed;

    int ck = CFG_FLAGS;
    u64 *flagsp = config.lookup(&ck);
    u64 flags = flagsp ? *flagsp : 0;
    if (flags & FLAG_ALLOWLIST) {
        if (!allowed_src.lookup(&src)) {
            COUNT(q, C_DENIED);
            if (flags & FLAG_DENY_DROP)
                return XDP_DROP;
            goto pass;
        }
    }

    /* Consumer gone or hung: the kernel gets the feed (before the rate cap: it charges only what we redirect). */
    int rxq = (int)ctx->rx_queue_index;
    u64 *died = dead.lookup(&rxq);
    if (died && *died) {
        COUNT(q, C_CONSUMER_GONE);
        if (!xsks.lookup(&rxq))
            COUNT(q, C_NO_SOCKET);
        goto pass;
    }
    if (flags & FLAG_WATCHDOG) {
        int wk = CFG_WATCHDOG_NS, hk = (int)q;
        u64 *limit = config.lookup(&wk), *beat = heartbeat.lookup(&hk);
        /* The consumer stamps its beat on another CPU all the time: load it before reading the clock, else
         * a stamp written in between is newer than `now` and the unsigned age wraps to "stale" (it diverted
         * 15-40% of a healthy consumer's feed). A beat at or after `now` is fresh, whatever the clocks say. */
        u64 b = beat ? *(volatile u64 *)beat : 0, now = bpf_ktime_get_ns();
        if (limit && beat && now > b && now - b > *limit) {
            COUNT(q, C_STALE);
            goto pass;
        }
    }
    if (flags & FLAG_RATE_CAP) {
        int ik = CFG_RATE_INTERVAL_NS, bk = CFG_RATE_BURST_NS;
        u64 *interval = config.lookup(&ik), *burst = config.lookup(&bk);
        if (!xsks.lookup(&rxq))
            goto no_socket; /* not going to be redirected: not charged */
        if (interval && burst) {
            u64 now = bpf_ktime_get_ns();
            u64 *tatp = src_tat.lookup(&src);
            u64 tat = tatp && *tatp > now ? *tatp : now;
            if (tat - now > *burst) {
                COUNT(q, C_RATE_LIMITED);
                return XDP_DROP;
            }
            tat += *interval;
            src_tat.update(&src, &tat);
        }
    }

    if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct xgw_meta)) == 0) {
        struct xgw_meta *meta = (void *)(long)ctx->data_meta;
        void *pkt = (void *)(long)ctx->data;
        if ((void *)(meta + 1) <= pkt) {
            meta->rx_ns = bpf_ktime_get_ns();
            meta->magic = XGW_META_MAGIC;
            meta->flags = 0;
        }
    } else {
        COUNT(q, C_NO_META);
    }
    int action = xsks.redirect_map(ctx->rx_queue_index, XDP_PASS);
    if (action == XDP_REDIRECT) {
        COUNT(q, C_REDIRECTED);
        return XDP_REDIRECT;
    }
no_socket:
    COUNT(q, C_NO_SOCKET);
    COUNT(q, C_PASSED);
    return XDP_PASS;

malformed:
    COUNT(q, C_MALFORMED);
pass:
    COUNT(q, C_PASSED);
    return XDP_PASS;
}

/*
 * Death notice. Any of these hooks that the kernel offers is attached (xdpgw/kernel/program.py); each marks the
 * dying process's queues dead and forgets the process (a later process reusing its pid is not a
 * consumer). A lone thread exiting is no death: only the main thread's exit counts. The first hook to
 * fire wins: for kill -9 that is normally signal_generate, in the killer.
 */
#define COREDUMP_SIGNALS ((1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 7) | (1u << 8) | (1u << 11) | \
                          (1u << 24) | (1u << 25) | (1u << 31)) /* QUIT ILL TRAP ABRT BUS FPE SEGV XCPU XFSZ SYS */

/* Mark the queues of consumer `tgid` dead and forget it. */
static __always_inline int mark_dead(u32 tgid)
{
    u64 *maskp = consumers.lookup(&tgid);
    if (!maskp)
        return 0;
    u64 mask = *maskp, now = bpf_ktime_get_ns();
    consumers.delete(&tgid);
    for (int i = 0; i < XGW_MAX_QUEUES; i++) {
        if (mask & (1ULL << i)) {
            int k = i;
            u64 *d = dead.lookup(&k);
            if (d)
                *d = now;
        }
    }
    return 0;
}

/* The current task is dying: if it belongs to a consumer, mark that consumer dead. */
static __always_inline int death_notice(int main_thread_only)
{
    int dk = CFG_PIDNS_DEV, ik = CFG_PIDNS_INO;
    u64 *dev = config.lookup(&dk), *ino = config.lookup(&ik);
    u32 tgid, pid;
    if (dev && ino && *ino) { /* consumers live in a pid namespace of their own: their getpid() values */
        struct bpf_pidns_info ns = {};
        if (bpf_get_ns_current_pid_tgid(*dev, *ino, &ns, sizeof(ns)))
            return 0; /* not in that namespace: not a consumer */
        tgid = ns.tgid;
        pid = ns.pid;
    } else {
        u64 id = bpf_get_current_pid_tgid();
        tgid = id >> 32;
        pid = (u32)id;
    }
    if (main_thread_only && pid != tgid)
        return 0;
    return mark_dead(tgid);
}

/* raw tracepoint signal_generate(sig, info, task, group, result), in the *sender*: a SIGKILL on its way to a
 * consumer, noticed at kill() time, before the victim runs again (it may wait for a CPU). Needs the tgid
 * offset from BTF; consumers in a pid namespace of their own rely on the victim-side hooks below. */
int xgw_death_kill(struct bpf_raw_tracepoint_args *ctx)
{
    if ((u32)ctx->args[0] != 9)
        return 0;
    int result = (int)ctx->args[4];
    if (result == 1 || result == 3) /* TRACE_SIGNAL_IGNORED, TRACE_SIGNAL_OVERFLOW_FAIL */
        return 0;
    int ok = CFG_TASK_TGID_OFF, ik = CFG_PIDNS_INO;
    u64 *off = config.lookup(&ok), *ino = config.lookup(&ik);
    if (!off || !*off || !ino || *ino)
        return 0;
    u32 tgid = 0;
    if (bpf_probe_read_kernel(&tgid, sizeof(tgid), (void *)ctx->args[2] + (*off - 1)))
        return 0;
    return mark_dead(tgid);
}

/* kprobe on do_group_exit(): exit_group() and every fatal signal (after a core dump) go through it. */
int xgw_death_kprobe(struct pt_regs *ctx)
{
    return death_notice(0);
}

/* raw tracepoint signal_deliver(sig, info, ka), in the receiving task: SIGKILL (also what every thread of
 * a process dying of any fatal signal gets), or a core-dumping signal left at its default action. */
int xgw_death_signal(struct bpf_raw_tracepoint_args *ctx)
{
    u32 sig = (u32)ctx->args[0];
    if (sig != 9) {
        if (sig > 31 || !((1u << sig) & COREDUMP_SIGNALS))
            return 0;
        u64 handler = 1;
        bpf_probe_read_kernel(&handler, sizeof(handler), (void *)ctx->args[2]); /* ka->sa.sa_handler */
        if (handler != 0) /* SIG_DFL */
            return 0;
    }
    return death_notice(0);
}

/* raw tracepoint sched_process_exit: the main thread exiting (exit_group() included). Recent kernels (6.18
 * here, measured) fire it before exit_mm(); older ones after it, and the hooks above carry the notice. */
int xgw_death_exit(struct bpf_raw_tracepoint_args *ctx)
{
    return death_notice(1);
}
