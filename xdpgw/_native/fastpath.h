/* In-order fast path: one C call per burst for the common case of a MoldUDP64/ITCH feed.
 *
 * This header is both the cffi cdef (xsk_build.py reads it) and what fastpath.c #includes, so
 * every declaration exists once. Keep it to what cffi's cdef parser accepts: no #include, no
 * function bodies, no expressions in array sizes.
 *
 * Python (xdpgw/protocol/fastpath.py) owns every buffer and "arms" the fast path with the
 * sequencer's state (session, next sequence) only while that state makes an in-order burst trivial:
 * no hole, nothing buffered, nothing parked, no unconfirmed session. xgw_fast_burst then takes a
 * burst only if every packet is of that session, continues exactly where the previous one ended, is
 * framed exactly and carries only valid ITCH messages (heartbeats allowed, no end of session). It
 * learns locates from Stock Directory messages, applies the subscription, copies the kept messages
 * into preallocated arrays grouped by type, counts, stamps latency and (when tracing) writes one
 * flight-recorder entry. With two lines (A/B) a line may take the fast path while it is at the front of
 * the merged stream; a burst that moves the front leaves only its own line armed. A line behind the front
 * whose burst continues its own stream exactly and ends at or before the front (the other line's copies
 * of what was delivered: the usual line-B burst) is counted as duplicates without output (dup_ok).
 * With a retransmission client (client_fd >= 0) a burst is taken only while no answer waits on its socket;
 * while another session is held (candidates), only until `expires` (when the general path would give one
 * up). At start-up (`proving`: one line, no session yet) a burst of one session whose well-formed packets
 * chain exactly proves that session (two chained packets, as the sequencer's rule) and is delivered in C;
 * a lone first packet is copied aside (`hold`) and delivered with the next burst that continues it (or,
 * if that one does not, handed to the sequencer by sync before the general path runs). Anything else
 * returns XGW_FAST_DEFER without any effect, and Python runs the general (sans-IO) path, which stays the
 * source of truth.
 */

enum {
    XGW_FAST_DEFER = -1,   /* not the common case: nothing was touched, use the general path */
    XGW_TRACE_COLS = 9,    /* int64 per flight-recorder entry, see XGW_TR_* */
    XGW_TR_RX_FIRST = 0,   /* kernel receive stamp of the burst's oldest packet (0: none) */
    XGW_TR_RX_LAST = 1,    /* ... of its newest packet */
    XGW_TR_POLL = 2,       /* the consumer started the receive call (CLOCK_MONOTONIC ns) */
    XGW_TR_DECODE = 3,     /* the receive call returned: decoding starts */
    XGW_TR_READY = 4,      /* decoded, sequenced, filtered: handlers start */
    XGW_TR_DONE = 5,       /* handlers returned */
    XGW_TR_PACKETS = 6,    /* packets in the burst */
    XGW_TR_FLAGS = 7,      /* messages delivered | XGW_TRF_* << 32 */
    XGW_TR_CPU = 8,        /* the consumer thread's CPU time at READY (wall - CPU: time it was not running) */
    XGW_TRF_SLOW = 1,      /* the general path ran */
    XGW_TRF_GC = 2,        /* a garbage collection ran since the previous entry */
    XGW_TRF_TICK = 4,      /* status/state/metrics work ran since the previous entry */
};

struct xgw_latency_acc {
    int64_t *counts;           /* the LatencyHistogram's buckets (xdpgw/pipeline/histogram.py) */
    int64_t ncounts, highest;
    uint32_t sub_bits;
    int64_t n, min, max, rejected, saturated;  /* pending: Python merges and zeroes them */
    double mean, m2;
};

struct xgw_fast {
    /* --- armed by Python ------------------------------------------------------------------ */
    uint32_t armed;            /* bit L: a burst from line L may take the fast path (A/B: L = 0, 1) */
    uint8_t session[10];
    uint64_t next;             /* the sequence the sequencer expects next */
    int32_t keep_all;          /* the subscription keeps everything */
    uint32_t nsymbols;
    const uint8_t *symbols;    /* nsymbols x 8 bytes (S8, space padded) */
    uint8_t *wanted;           /* [65536] wanted by locate (the Subscription's array, learnt in place) */
    uint8_t *names;            /* [65536 x 8] locate -> symbol (likewise) */
    const uint8_t *sizes;      /* [256] ITCH message size by type code, 0: unknown */
    const uint8_t *stock_off;  /* [256] byte offset of the stock field, 0: none */
    int64_t *type_counts;      /* [256] delivered messages by type (the FeedHandler's) */
    uint32_t dup_ok;           /* bit L: line L's own stream is known (line_high[L]); a burst continuing it
                                  wholly behind the front is a duplicate burst */
    uint64_t sure;             /* the sequencer's `sure` (corroborated high) */
    uint64_t dup_floor;        /* the end of the last given-up range: copies below it may be late, not duplicate */
    int32_t client_fd;         /* the retransmission client's socket, -1: none */
    double expires;            /* > 0: at or after this time (feed clock) a held session may be given up */
    double session_timeout;    /* the sequencer's: a silent session may be replaced after this long */
    uint32_t proven;           /* a held session is proven (may take over once ours is silent) */
    /* --- start-up: no session followed yet (one line) ------------------------------------- */
    uint32_t proving;          /* no session, nothing held by the sequencer: a burst whose packets chain
                                  (well-formed, one session, each starting where the one before ended, no
                                  heartbeat) proves its session and is delivered, as the sequencer's adoption
                                  would; a lone first packet is held (hold) until the next burst */
    uint8_t *hold;             /* [cap_hold] the held packet's bytes */
    uint32_t cap_hold, hold_len;  /* hold_len 0: nothing held */
    uint64_t hold_ts;          /* its kernel receive stamp */
    double hold_now;           /* the feed clock when it came (sync hands it to the sequencer with this time) */
    uint32_t adopted;          /* pending: the session in `session` was adopted in C (sync tells the sequencer) */
    /* --- output buffers (capacity set by Python) -------------------------------------------- */
    uint32_t cap_msgs, cap_pkts;
    int64_t cap_bytes;
    uint64_t *m_seq;
    int64_t *m_pkt;
    uint8_t *m_type;
    uint16_t *m_len;
    int32_t *order;            /* record k (grouped by type) is kept message order[k] */
    uint8_t *records;          /* kept records grouped by type, ascending code */
    char *p_session;
    uint64_t *p_seq;
    uint16_t *p_count;
    uint32_t *p_nmsg;
    uint64_t *p_ts;
    int64_t *types;            /* [4 x 256] code, count, byte start, index start per present type */
    int64_t *scratch_off;      /* [cap_msgs] message addresses (uintptr_t), in the burst or the hold */
    /* --- the last burst ---------------------------------------------------------------------- */
    uint32_t npkts, nmsgs, nkept, ntypes;
    int64_t nbytes, in_bytes;  /* record bytes kept; payload bytes received */
    int32_t result;            /* xgw_fast_rx_xdp: what xgw_fast_burst returned for the burst */
    /* --- pending counters (Python adds them to its own and zeroes them) ------------------------ */
    uint64_t delivered, heartbeats, kept, bursts, duplicates;
    double last_heard;
    uint64_t line_packets[2], line_messages[2], line_bursts[2], line_high[2], line_first[2];  /* per line (A/B) */
    /* --- A/B lines in one stream (xgw_fast_lines): each line's packets, in order ------------------ */
    int64_t *l_offs;           /* [2 x cap_pkts]: line A's at 0, line B's at cap_pkts */
    uint32_t *l_lens;
    uint64_t *l_ts;
    uint32_t l_count[2];       /* the last burst's packets per line */
    uint32_t defer_b;          /* xgw_fast_lines: line A was taken, line B's packets need the general path */
    /* --- optional: latency histogram, flight recorder --------------------------------------- */
    struct xgw_latency_acc *latency;
    int64_t *trace;            /* [trace_cap x XGW_TRACE_COLS] ring, NULL: off */
    uint64_t trace_cap, trace_n;
};

int32_t xgw_fast_burst(struct xgw_fast *f, const uint8_t *buf, const int64_t *offs, const uint32_t *lens,
                       const uint64_t *ts, uint32_t npkts, uint32_t line, double now, int64_t t_poll);
/* One receiver's burst carrying both lines (line B: UDP destination port port_b; dports[i] is packet i's,
 * the receiver's Batch.dports, on every transport): line A's packets, then line B's, each through xgw_fast_burst.
 * Returns messages delivered (in the output arrays), or XGW_FAST_DEFER without any effect. When line A
 * was taken and delivered something, line B is only taken as a duplicate burst; otherwise defer_b is set
 * and Python runs line B's packets (l_offs + cap_pkts, l_count[1]) through the general path after delivering. */
int32_t xgw_fast_lines(struct xgw_fast *f, const uint8_t *buf, const int64_t *offs, const uint32_t *lens,
                       const uint64_t *ts, const uint16_t *dports, uint32_t npkts, uint32_t port_b, double now,
                       int64_t t_poll);
/* For an idle poll while armed: 1 when the general path would have nothing to do at `now` (no answer
 * waiting, no held session to give up or to take over), else 0. */
int32_t xgw_fast_idle(const struct xgw_fast *f, double now);
void xgw_trace_burst(struct xgw_fast *f, const uint64_t *ts, uint32_t n, int64_t t_poll, int64_t t_decode,
                     int64_t t_ready, int64_t flags);
void xgw_trace_done(struct xgw_fast *f, int64_t t_done, int64_t flags);

/* The reference for latency benchmarks: a bare C consumer loop on an AF_XDP socket (xsk.c) that
 * only receives (busy-polling spin_ns per call, as XdpReceiver) and stamps (kernel receive -> seen)
 * into acc until CLOCK_MONOTONIC reaches until_ns. Returns the packets received. */
struct xgw_xsk;
/* Receive a burst from an AF_XDP socket (xgw_rx_burst) and run the fast path on it, in one call: returns
 * the packets received (< 0: a receive error) and leaves xgw_fast_burst's answer in f->result (last_heard:
 * CLOCK_MONOTONIC seconds, the FeedHandler's default clock). */
int32_t xgw_fast_rx_xdp(struct xgw_fast *f, struct xgw_xsk *s, uint32_t max, int64_t *offs, uint32_t *lens,
                        uint64_t *ts, uint16_t *hdr, uint16_t *dport, int64_t spin_ns, int64_t t_poll);
int64_t xgw_bare_consume(struct xgw_xsk *s, int64_t until_ns, int64_t spin_ns, struct xgw_latency_acc *acc);
