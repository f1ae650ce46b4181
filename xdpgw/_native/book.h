/* Order-book engine: ITCH 5.0 messages -> L3 books -> L2 levels -> BBO and trade records.
 *
 * This header is both the cffi cdef (xdpgw/_native/book_build.py reads it) and #included by book.c:
 * every struct and function Python sees is declared here once. Plain declarations only (no #include,
 * no macro with a value): cffi parses it as it is. Python owns the lifetime of an engine
 * (xbk_new / xbk_free through ffi.gc) and of every output buffer it hands in.
 */

/* Book flags (struct xbk_bbo.flags, struct xbk_top.flags): stale after a gap; each error cause seen. */
enum xbk_flag {
    XBK_FLAG_STALE = 1, XBK_FLAG_UNKNOWN_ORDER = 2, XBK_FLAG_OVERSIZED_EXECUTION = 4, XBK_FLAG_CROSSED = 8,
    XBK_FLAG_DUPLICATE_ORDER = 16, XBK_FLAG_REJECTED_ORDER = 32, XBK_FLAG_OVERSIZED_CANCEL = 64,
};

/* Error causes: index into struct xbk_stats.errors. */
enum xbk_error {
    XBK_ERR_UNKNOWN_ORDER = 0, XBK_ERR_OVERSIZED_EXECUTION = 1, XBK_ERR_CROSSED_BOOK = 2,
    XBK_ERR_DUPLICATE_ORDER = 3, XBK_ERR_REJECTED_ORDER = 4, XBK_ERR_OVERSIZED_CANCEL = 5, XBK_NERRORS = 6,
};

/* One record per change of the best bid or offer of a book (numpy: xdpgw.book.records.BBO). */
struct xbk_bbo {
    uint64_t seq;        /* sequence number of the message that changed it */
    uint64_t ts;         /* its exchange timestamp, ns since midnight */
    uint64_t bid_size, ask_size;
    uint32_t bid_price, ask_price;  /* Price(4); 0 with an empty side */
    uint32_t bid_count, ask_count;  /* orders at the best level */
    uint16_t locate;
    uint8_t flags;       /* XBK_FLAG_* bits of the book (stale, errors) */
    uint8_t pad[5];
    char symbol[8];
};

/* One record per trade: E (at the resting price), printable C (at its price), P, Q. */
struct xbk_trade {
    uint64_t seq, ts, shares, order_ref, match;
    uint32_t price;
    uint16_t locate;
    char kind;           /* the message type: E C P Q */
    char side;           /* resting side for E/C, the message's for P, ' ' for Q */
    char symbol[8];
};

/* Where one xbk_apply* call writes; cap bounds both arrays (one record per message at most). */
struct xbk_out {
    struct xbk_bbo *bbo;
    struct xbk_trade *trades;
    int64_t cap;
    int64_t nbbo, ntrades;   /* written by this call */
    int64_t messages;        /* messages applied or skipped by this call (the stream reader: framed) */
    int64_t bad;             /* frames the stream reader skipped (unknown type, wrong length) */
};

/* One price level (depth queries). */
struct xbk_level {
    uint64_t shares;
    uint32_t price, count;
};

/* One resting order (orders queries), in book order: bids best first, then asks best first. */
struct xbk_order {
    uint64_t ref;
    uint32_t price, shares;
    char side;
    uint8_t pad[7];
};

/* Top of one book (status and summaries). */
struct xbk_top {
    uint64_t bid_size, ask_size;
    uint32_t bid_price, ask_price, bid_count, ask_count;
    uint32_t orders, levels;
    uint16_t locate;
    uint8_t flags;
    char state;          /* last H trading state (T H P Q), ' ' before any */
    char symbol[8];
};

/* Feed-wide counters. errors[] by cause (enum xbk_error). */
struct xbk_stats {
    uint64_t messages, bbo, trades, live_orders, levels, books, stale_books, gaps;
    uint64_t errors[8];
    int32_t suspect_all;     /* after a gap, until an unknown order reference pinpoints a book */
    char last_event;         /* last system event code (S), ' ' before any */
    uint8_t pad[3];
};

struct xbk_engine;

struct xbk_engine *xbk_new(const uint8_t *sizes, uint32_t orders_hint);
void xbk_free(struct xbk_engine *e);
void xbk_reset(struct xbk_engine *e);
void xbk_want(struct xbk_engine *e, const char *symbols, uint32_t n);
int64_t xbk_apply(struct xbk_engine *e, const uint8_t *raw, const int64_t *off, const uint8_t *type,
                  const uint8_t *err, const uint64_t *seq, int64_t n, struct xbk_out *out);
int64_t xbk_apply_grouped(struct xbk_engine *e, const uint8_t *raw, const int32_t *grouped, int64_t nvalid,
                          const uint8_t *type, const uint8_t *err, const uint64_t *seq, int64_t n,
                          struct xbk_out *out);
int64_t xbk_apply_stream(struct xbk_engine *e, const uint8_t *buf, int64_t len, uint64_t first_seq,
                         struct xbk_out *out);
void xbk_gap(struct xbk_engine *e);
int32_t xbk_locate(struct xbk_engine *e, const char *symbol);
int32_t xbk_depth(struct xbk_engine *e, uint16_t locate, int32_t ask, struct xbk_level *out, int32_t max);
int64_t xbk_orders(struct xbk_engine *e, uint16_t locate, struct xbk_order *out, int64_t max);
int64_t xbk_tops(struct xbk_engine *e, struct xbk_top *out, int64_t max);
void xbk_top(struct xbk_engine *e, uint16_t locate, struct xbk_top *out);
void xbk_stats(struct xbk_engine *e, struct xbk_stats *out);
