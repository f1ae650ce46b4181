/* In-order fast path (see fastpath.h for the contract). Linked into one extension with xsk.c and hist.c
 * (xsk_build.py), whose functions it calls; MoldUDP64 framing from mold.h, helpers from common.h. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common.h"
#include "fastpath.h"
#include "hist.h"
#include "mold.h"
#include "xsk.h"

static void xgw_latency_since(struct xgw_latency_acc *acc, int64_t now, const uint64_t *ts, uint32_t n)
{
    struct xgw_hist_batch b;
    xgw_hist_since(acc->counts, acc->ncounts, acc->sub_bits, acc->highest, now, ts, n, &b);
    acc->rejected += b.rejected;
    acc->saturated += b.saturated;
    if (!b.n)
        return;
    if (!acc->n) {
        acc->min = b.min, acc->max = b.max, acc->mean = b.mean, acc->m2 = b.m2, acc->n = b.n;
        return;
    }
    if (b.min < acc->min)
        acc->min = b.min;
    if (b.max > acc->max)
        acc->max = b.max;
    double total = (double)(acc->n + b.n), delta = b.mean - acc->mean; /* Chan et al., as LatencyHistogram */
    acc->mean += delta * (double)b.n / total;
    acc->m2 += b.m2 + delta * delta * (double)acc->n * (double)b.n / total;
    acc->n += b.n;
}

void xgw_trace_burst(struct xgw_fast *f, const uint64_t *ts, uint32_t n, int64_t t_poll, int64_t t_decode,
                     int64_t t_ready, int64_t flags)
{
    if (!f->trace || !f->trace_cap)
        return;
    int64_t *e = f->trace + (f->trace_n % f->trace_cap) * XGW_TRACE_COLS;
    uint64_t lo = 0, hi = 0;
    for (uint32_t i = 0; ts && i < n; i++) {
        if (!ts[i])
            continue;
        if (!lo || ts[i] < lo)
            lo = ts[i];
        if (ts[i] > hi)
            hi = ts[i];
    }
    e[XGW_TR_RX_FIRST] = (int64_t)lo;
    e[XGW_TR_RX_LAST] = (int64_t)hi;
    e[XGW_TR_POLL] = t_poll;
    e[XGW_TR_DECODE] = t_decode;
    e[XGW_TR_READY] = t_ready;
    e[XGW_TR_DONE] = t_ready;
    e[XGW_TR_PACKETS] = n;
    e[XGW_TR_FLAGS] = flags;
    struct timespec c;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c);
    e[XGW_TR_CPU] = (int64_t)c.tv_sec * 1000000000 + c.tv_nsec;
    f->trace_n++;
}

void xgw_trace_done(struct xgw_fast *f, int64_t t_done, int64_t flags)
{
    if (!f->trace || !f->trace_n)
        return;
    int64_t *e = f->trace + ((f->trace_n - 1) % f->trace_cap) * XGW_TRACE_COLS;
    e[XGW_TR_DONE] = t_done;
    e[XGW_TR_FLAGS] |= flags << 32;
}

static int xgw_fast_symbol(const struct xgw_fast *f, const uint8_t *stock)
{
    for (uint32_t i = 0; i < f->nsymbols; i++)
        if (!memcmp(f->symbols + 8 * (size_t)i, stock, 8))
            return 1;
    return 0;
}

/* 1 if a datagram (or an error the general path would read) waits on the retransmission socket. */
static int xgw_answer_waiting(int fd)
{
    uint8_t c;
    if (fd < 0)
        return 0;
    if (recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) >= 0)
        return 1;
    return errno != EAGAIN && errno != EWOULDBLOCK;
}

int32_t xgw_fast_idle(const struct xgw_fast *f, double now)
{
    if (!f->armed && !f->dup_ok && !f->proving)
        return 0;
    if (f->expires > 0 && now >= f->expires)
        return 0;
    if (f->proven && now - f->last_heard >= f->session_timeout)
        return 0;
    return !xgw_answer_waiting(f->client_fd);
}

/* A burst taken: its packets' latency (kernel receive -> now, handlers start) and its flight-recorder entry. */
static void xgw_fast_stamp(struct xgw_fast *f, const uint64_t *ts, uint32_t npkts, int64_t t_poll, int64_t t_decode,
                           int64_t kept)
{
    int64_t t_ready = 0;
    if (f->latency && ts) {
        t_ready = xgw_mono_ns();
        xgw_latency_since(f->latency, t_ready, ts, npkts);
    }
    if (f->trace)
        xgw_trace_burst(f, ts, npkts, t_poll, t_decode, t_ready ? t_ready : xgw_mono_ns(), kept);
}

/* What every burst taken counts: its line's packets, messages and high-water mark, heartbeats, when heard. */
static void xgw_fast_count(struct xgw_fast *f, uint32_t line, uint32_t npkts, uint32_t m, uint32_t hb, uint64_t end,
                           double now)
{
    f->line_packets[line] += npkts;
    f->line_messages[line] += m;
    f->line_bursts[line]++;
    f->line_high[line] = end;
    f->heartbeats += hb;
    f->bursts++;
    f->last_heard = now;
}

/* A line's burst wholly behind the front, continuing its own stream (validated by the caller): what the
 * general path does with it: count duplicates, heartbeats, the line's packets and high-water mark. */
static void xgw_fast_dup(struct xgw_fast *f, uint32_t line, uint32_t npkts, uint32_t m, uint32_t hb, uint64_t end,
                         double now)
{
    xgw_fast_count(f, line, npkts, m, hb, end, now);
    f->duplicates += m;
    if (end > f->sure)
        f->sure = end;
    if (end == f->next)
        f->armed |= 1u << line; /* caught up with the front */
}

/* A burst as the fast path reads it: `held` packets first (0 or 1: the packet in f->hold), then the n
 * payloads buf + offs[i] (lens[i], stamps ts[i]). */
struct xgw_view {
    const uint8_t *buf;
    const int64_t *offs;
    const uint32_t *lens;
    const uint64_t *ts;
    uint32_t n, held;
};

static inline const uint8_t *xgw_view_pkt(const struct xgw_fast *f, const struct xgw_view *v, uint32_t i,
                                          uint32_t *len)
{
    if (i < v->held) {
        *len = f->hold_len;
        return f->hold;
    }
    *len = v->lens[i - v->held];
    return v->buf + v->offs[i - v->held];
}

/* Step 1 of every burst, before touching anything: each packet is of f->session, starts where the one before
 * ended (the first at `first`), is framed exactly and carries only valid ITCH messages (no end of session).
 * With `out`, notes each message's address (scratch) and packet (m_pkt: a duplicate burst writes no output,
 * line A's may still be in it); gives the end (next sequence), messages, heartbeats and the payload bytes
 * received (held packets were counted when they came). 0: not so (XGW_FAST_DEFER). */
static int xgw_fast_check(struct xgw_fast *f, const struct xgw_view *v, uint64_t first, int out, uint64_t *end,
                          uint32_t *msgs, uint32_t *beats, int64_t *bytes)
{
    const uint8_t *sizes = f->sizes;
    uint64_t expect = first;
    uint32_t m = 0, hb = 0, npkts = v->held + v->n;
    int64_t in_bytes = 0;
    for (uint32_t i = 0; i < npkts; i++) {
        uint32_t len;
        const uint8_t *p = xgw_view_pkt(f, v, i, &len);
        if (i >= v->held)
            in_bytes += len;
        if (len < XGW_MOLD_HDR || memcmp(p, f->session, 10) || xgw_be64(p + 10) != expect)
            return 0;
        uint16_t count = xgw_be16(p + 18);
        if (count == 0xFFFF)
            return 0; /* end of session: rare, the general path handles it */
        uint32_t pos = XGW_MOLD_HDR, found = 0;
        while (pos < len) {
            if (pos + 2 > len || m >= f->cap_msgs)
                return 0;
            uint16_t bl = xgw_be16(p + pos);
            if (!bl || (uint64_t)pos + 2 + bl > len || sizes[p[pos + 2]] != bl)
                return 0;
            if (out) {
                f->scratch_off[m] = (int64_t)(uintptr_t)(p + pos + 2);
                f->m_pkt[m] = i;
            }
            m++;
            found++;
            pos += 2 + (uint32_t)bl;
        }
        if (found != count)
            return 0;
        hb += count == 0;
        expect += found;
    }
    if (expect >= ((uint64_t)1 << 62))
        return 0; /* near the screen's bound: let it judge */
    *end = expect, *msgs = m, *beats = hb, *bytes = in_bytes;
    return 1;
}

static int32_t xgw_fast_take(struct xgw_fast *f, const struct xgw_view *v, uint32_t line, double now, int64_t t_poll,
                             int64_t t_decode, int dup_only, int no_beats)
{
    uint32_t npkts = v->held + v->n, len0;
    if (line > 1 || !(((f->armed | f->dup_ok) >> line) & 1) || !v->n || npkts > f->cap_pkts)
        return XGW_FAST_DEFER;
    const uint8_t *p0 = xgw_view_pkt(f, v, 0, &len0);
    if (len0 < XGW_MOLD_HDR)
        return XGW_FAST_DEFER;
    if (f->expires > 0 && now >= f->expires)
        return XGW_FAST_DEFER; /* a held session is due to be given up: the general path does it */
    /* in order at the front, or (dup) continuing this line's own stream wholly behind the front */
    uint64_t first = xgw_be64(p0 + 10);
    int dup;
    if (!dup_only && ((f->armed >> line) & 1) && first == f->next)
        dup = 0;
    else if (((f->dup_ok >> line) & 1) && first == f->line_high[line] && first < f->next && first >= f->dup_floor)
        dup = 1;
    else
        return XGW_FAST_DEFER;
    const uint8_t *sizes = f->sizes;
    uint64_t expect;
    uint32_t m, hb;
    int64_t in_bytes;
    /* 1. validate the whole burst before touching anything */
    if (!xgw_fast_check(f, v, first, !dup, &expect, &m, &hb, &in_bytes) || (no_beats && hb))
        return XGW_FAST_DEFER;
    if (dup && expect > f->next)
        return XGW_FAST_DEFER; /* partly beyond the front: new messages, the general path sorts it out */
    if (xgw_answer_waiting(f->client_fd))
        return XGW_FAST_DEFER; /* the general path would take the retransmission answer in first */
    if (dup) {
        xgw_fast_dup(f, line, npkts, m, hb, expect, now);
        f->in_bytes = in_bytes;
        xgw_fast_stamp(f, v->ts, v->n, t_poll, t_decode, 0);
        return 0;
    }
    /* 2. learn locates from Stock Directory messages (before filtering, as Subscription.filter) */
    const uint8_t r_off = f->stock_off['R'];
    for (uint32_t k = 0; k < m; k++) {
        const uint8_t *msg = (const uint8_t *)(uintptr_t)f->scratch_off[k];
        if (msg[0] != 'R')
            continue;
        uint16_t loc = xgw_be16(msg + 1);
        memcpy(f->names + 8 * (size_t)loc, msg + r_off, 8);
        if (f->nsymbols && xgw_fast_symbol(f, msg + r_off))
            f->wanted[loc] = 1;
    }
    /* 3. keep what the subscription wants; count per type (tc[t] is set for the types present: the bits) */
    uint32_t tc[256];
    uint64_t present[4] = {0, 0, 0, 0};
    uint32_t kept = 0;
    uint64_t seq = f->next;
    for (uint32_t k = 0; k < m; k++) {
        const uint8_t *msg = (const uint8_t *)(uintptr_t)f->scratch_off[k];
        uint8_t t = msg[0];
        int keep = f->keep_all;
        if (!keep) {
            keep = f->wanted[xgw_be16(msg + 1)];
            if (!keep && f->nsymbols && f->stock_off[t])
                keep = xgw_fast_symbol(f, msg + f->stock_off[t]);
        }
        if (keep) {
            f->scratch_off[kept] = f->scratch_off[k];
            f->m_pkt[kept] = f->m_pkt[k];
            f->m_seq[kept] = seq + k;
            f->m_type[kept] = t;
            f->m_len[kept] = sizes[t];
            uint64_t bit = (uint64_t)1 << (t & 63);
            if (!(present[t >> 6] & bit))
                present[t >> 6] |= bit, tc[t] = 0;
            tc[t]++;
            kept++;
        }
    }
    /* 4. type table and gather (records fit: Python makes cap_bytes >= cap_msgs x the largest size), grouped by type (as xgw_mold_gather lays records out) */
    int64_t bstart[256], istart[256], nbytes = 0, idx = 0;
    int64_t *ty = f->types;
    uint32_t ntypes = 0;
    for (int w = 0; w < 4; w++) /* the types present, ascending (not all 256 codes: most of a 1-message burst) */
        for (uint64_t bits = present[w]; bits; bits &= bits - 1) {
            int t = w * 64 + __builtin_ctzll(bits);
            bstart[t] = nbytes;
            istart[t] = idx;
            ty[0] = t, ty[1] = tc[t], ty[2] = nbytes, ty[3] = idx;
            ty += 4;
            ntypes++;
            idx += tc[t];
            nbytes += (int64_t)tc[t] * sizes[t];
        }
    for (uint32_t k = 0; k < kept; k++) {
        uint8_t t = f->m_type[k];
        memcpy(f->records + bstart[t], (const uint8_t *)(uintptr_t)f->scratch_off[k], sizes[t]);
        bstart[t] += sizes[t];
        f->order[istart[t]++] = (int32_t)k;
        f->type_counts[t]++;
    }
    /* 5. per-packet arrays, state, counters */
    for (uint32_t i = 0; i < npkts; i++) {
        uint32_t len;
        const uint8_t *p = xgw_view_pkt(f, v, i, &len);
        memcpy(f->p_session + 10 * (size_t)i, p, 10);
        f->p_seq[i] = xgw_be64(p + 10);
        f->p_count[i] = xgw_be16(p + 18);
        f->p_nmsg[i] = f->p_count[i];
        f->p_ts[i] = i < v->held ? f->hold_ts : v->ts ? v->ts[i - v->held] : 0;
    }
    f->npkts = npkts, f->nmsgs = m, f->nkept = kept, f->ntypes = ntypes, f->nbytes = nbytes;
    f->in_bytes = in_bytes;
    if (expect != f->next)
        f->armed = 1u << line; /* the front moved: the other line is behind it now */
    f->next = f->sure = expect;
    xgw_fast_count(f, line, npkts, m, hb, expect, now);
    f->line_first[line] += m;
    f->delivered += m;
    f->kept += kept;
    xgw_fast_stamp(f, v->ts, v->n, t_poll, t_decode, kept);
    return (int32_t)kept;
}

/* Start-up (f->proving, one line): what the sequencer does with a first session whose packets chain, in C.
 * A lone first packet (well-formed, with messages) cannot prove its session: it is held, as the sequencer
 * holds it (sync hands it over if the next burst does not continue it). A burst that, after what is held,
 * has two or more packets chaining exactly (no heartbeat) proves the session: it is followed from the first
 * packet's sequence (or the feed's first_seq, which must be that) and everything is delivered. */
static int32_t xgw_fast_prove(struct xgw_fast *f, struct xgw_view *v, double now, int64_t t_poll, int64_t t_decode)
{
    uint32_t len0;
    v->held = f->hold_len ? 1 : 0;
    if (!v->n || v->held + v->n > f->cap_pkts)
        return XGW_FAST_DEFER;
    const uint8_t *p0 = xgw_view_pkt(f, v, 0, &len0);
    if (len0 < XGW_MOLD_HDR)
        return XGW_FAST_DEFER;
    uint64_t first = xgw_be64(p0 + 10), end;
    if (!first || (f->next && first != f->next))
        return XGW_FAST_DEFER; /* sequence 0 is never believed; with a first_seq the session starts there */
    memcpy(f->session, p0, 10);
    if (v->held + v->n == 1) {
        uint32_t m, hb;
        int64_t bytes;
        if (!xgw_fast_check(f, v, first, 0, &end, &m, &hb, &bytes) || hb || len0 > f->cap_hold
            || xgw_answer_waiting(f->client_fd))
            return XGW_FAST_DEFER;
        memcpy(f->hold, p0, len0);
        f->hold_len = len0, f->hold_ts = v->ts ? v->ts[0] : 0, f->hold_now = now;
        f->in_bytes = bytes;
        xgw_fast_stamp(f, v->ts, v->n, t_poll, t_decode, 0);
        return 0;
    }
    uint64_t next = f->next;
    f->next = first, f->armed = 1;
    int32_t k = xgw_fast_take(f, v, 0, now, t_poll, t_decode, 0, 1);
    if (k == XGW_FAST_DEFER) {
        f->next = next, f->armed = 0;
        return XGW_FAST_DEFER;
    }
    f->proving = 0, f->adopted = 1, f->hold_len = 0;
    return k;
}

int32_t xgw_fast_burst(struct xgw_fast *f, const uint8_t *buf, const int64_t *offs, const uint32_t *lens,
                       const uint64_t *ts, uint32_t npkts, uint32_t line, double now, int64_t t_poll)
{
    int64_t t_decode = f->trace ? xgw_mono_ns() : 0;
    struct xgw_view v = {buf, offs, lens, ts, npkts, 0};
    if (f->proving && !line)
        return xgw_fast_prove(f, &v, now, t_poll, t_decode);
    return xgw_fast_take(f, &v, line, now, t_poll, t_decode, 0, 0);
}

int32_t xgw_fast_lines(struct xgw_fast *f, const uint8_t *buf, const int64_t *offs, const uint32_t *lens,
                       const uint64_t *ts, const uint16_t *dports, uint32_t npkts, uint32_t port_b, double now,
                       int64_t t_poll)
{
    int64_t t_decode = f->trace ? xgw_mono_ns() : 0;
    if (!npkts || npkts > f->cap_pkts)
        return XGW_FAST_DEFER;
    uint32_t na = 0, nb = 0, cap = f->cap_pkts;
    int64_t bytes[2] = {0, 0};
    for (uint32_t i = 0; i < npkts; i++) {
        uint32_t b = dports[i] == port_b;
        uint32_t j = b ? cap + nb++ : na++;
        f->l_offs[j] = offs[i];
        f->l_lens[j] = lens[i];
        f->l_ts[j] = ts ? ts[i] : 0;
        bytes[b] += lens[i];
    }
    f->l_count[0] = na, f->l_count[1] = nb, f->defer_b = 0;
    int32_t ka = 0, kb = 0;
    if (na) {
        struct xgw_view va = {buf, f->l_offs, f->l_lens, f->l_ts, na, 0};
        ka = xgw_fast_take(f, &va, 0, now, t_poll, t_decode, 0, 0);
        if (ka == XGW_FAST_DEFER)
            return XGW_FAST_DEFER;
    }
    if (nb) {
        struct xgw_view vb = {buf, f->l_offs + cap, f->l_lens + cap, f->l_ts + cap, nb, 0};
        kb = xgw_fast_take(f, &vb, 1, now, t_poll, t_decode, ka > 0, 0);
        if (kb == XGW_FAST_DEFER) {
            if (!na)
                return XGW_FAST_DEFER;
            f->defer_b = 1, kb = 0, bytes[1] = 0;
        }
    }
    f->in_bytes = bytes[0] + bytes[1];
    return ka + kb;
}

int64_t xgw_bare_consume(struct xgw_xsk *s, int64_t until_ns, int64_t spin_ns, struct xgw_latency_acc *acc)
{
    int64_t offs[256], total = 0;
    uint32_t lens[256];
    uint64_t ts[256];
    while (xgw_mono_ns() < until_ns) {
        int n = xgw_rx_burst(s, 256, offs, lens, ts, NULL, NULL, spin_ns);
        if (n < 0)
            return n;
        if (n) {
            xgw_latency_since(acc, xgw_mono_ns(), ts, (uint32_t)n);
            total += n;
        }
    }
    return total;
}

int32_t xgw_fast_rx_xdp(struct xgw_fast *f, struct xgw_xsk *s, uint32_t max, int64_t *offs, uint32_t *lens,
                        uint64_t *ts, uint16_t *hdr, uint16_t *dport, int64_t spin_ns, int64_t t_poll)
{
    int n = xgw_rx_burst(s, max, offs, lens, ts, hdr, dport, spin_ns);
    f->result = XGW_FAST_DEFER;
    if (n > 0)
        f->result = xgw_fast_burst(f, (const uint8_t *)xgw_xsk_area(s), offs, lens, ts, (uint32_t)n, 0,
                                   (double)xgw_mono_ns() * 1e-9, t_poll);
    return n;
}
