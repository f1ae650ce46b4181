/* MoldUDP64 block splitting (mold.c): a burst of datagrams to per-message arrays in one call, then the
 * valid messages gathered by type.
 *
 * This header is the cffi cdef of the `_mold` binding (mold_build.py reads it) and #included by mold.c
 * and fastpath.c. Python reads the error codes and the s->info layout from here (lib.XGW_MOLD_*,
 * lib.XGW_MI_*): xdpgw/protocol/moldudp64.py and decode.py. Python owns every buffer the scratch points to.
 */

#define XGW_MOLD_HDR 20   /* session(10) sequence(u64) count(u16) */

/* Error codes, per packet (pkt_err) and per message (msg_err); Python's names are the lower-case tails. */
enum xgw_mold_error {
    XGW_MOLD_OK = 0,
    XGW_MOLD_SHORT_PACKET = 1,
    XGW_MOLD_COUNT_MISMATCH = 2,
    XGW_MOLD_BLOCK_OVERRUN = 3,
    XGW_MOLD_UNKNOWN_TYPE = 4,
    XGW_MOLD_BAD_LENGTH = 5,
};

/* s->info layout (int64): the burst's bookkeeping written by xgw_mold_split. */
enum xgw_mold_info {
    XGW_MI_NMSG = 0,        /* messages found (valid or not) */
    XGW_MI_NVALID = 1,      /* valid messages */
    XGW_MI_OUT_BYTES = 2,   /* bytes the gather writes */
    XGW_MI_NTYPES = 3,      /* distinct valid types */
    XGW_MI_FIRST = 4,       /* sequence of packet 0 */
    XGW_MI_END = 5,         /* sequence + blocks of the last packet */
    XGW_MI_SIMPLE = 6,      /* no short packet, one session, packets chained */
    XGW_MI_HEARTBEATS = 7,  /* count 0 and well-formed */
    XGW_MI_EOS = 8,         /* count 0xFFFF */
    XGW_MI_ERRORS = 9,      /* any packet or message error */
    XGW_MI_PKT_ERR = 16,    /* 8 counters by packet error code */
    XGW_MI_MSG_ERR = 24,    /* 8 counters by message error code */
    XGW_MI_TYPES = 32,      /* per present type, ascending code: code, count, byte start, index start */
    XGW_MI_SIZE = XGW_MI_TYPES + 4 * 256,
};

/* Set up once by Python (xdpgw.protocol.decode.Decoder); the per-packet and per-message arrays are
 * re-aimed before every split. */
struct xgw_mold_scratch {
    const uint8_t *sizes;   /* [256] ITCH message size by type code, 0: unknown */
    int64_t cap_msgs;       /* rows left in the message arrays */
    char *pkt_session;
    uint64_t *pkt_seq;
    uint16_t *pkt_count;
    uint32_t *pkt_nmsg;
    uint8_t *pkt_err;
    int64_t *msg_pkt;
    int64_t *msg_off;
    uint16_t *msg_len;
    uint64_t *msg_seq;
    uint8_t *msg_type;
    uint8_t *msg_err;
    int64_t *info;          /* [XGW_MI_SIZE] */
    int64_t bstart[256], istart[256];
};

/* Returns the number of messages, or -1 when s->cap_msgs is too small (grow and call again). */
int64_t xgw_mold_split(struct xgw_mold_scratch *s, const uint8_t *buf, const int64_t *offs,
                       const uint32_t *lens, uint32_t npkts);
/* Copy the valid messages of the last split into ``out`` grouped by type; ``order[k]`` is the
 * message index of output row k. */
void xgw_mold_gather(struct xgw_mold_scratch *s, const uint8_t *buf, uint8_t *out, int32_t *order);
