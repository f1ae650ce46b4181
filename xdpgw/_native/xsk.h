/* AF_XDP socket + UMEM (xsk.c): open, receive bursts, statistics; the send path is frames.h.
 *
 * This header is the cffi cdef of the AF_XDP binding (xsk_build.py reads it) and #included by xsk.c,
 * frames.c and fastpath.c: every declaration Python sees exists once. Plain declarations only; the
 * socket itself (struct xgw_xsk) is opaque here and defined in xsk_internal.h. Python
 * (xdpgw.transport.xdp) owns its lifetime: xgw_xsk_open / xgw_xsk_close.
 */

/* cdef-only: bind flags, values from <linux/if_xdp.h>
#define XDP_COPY ...
#define XDP_ZEROCOPY ...
#define XDP_USE_NEED_WAKEUP ...
cdef-only */

struct xgw_xsk_config {
    uint32_t nframes;     /* total UMEM frames (power of two) */
    uint32_t tx_frames;   /* of which reserved for transmit */
    uint32_t frame_size;  /* 2048 or 4096 */
    uint32_t rx_size;     /* RX ring descriptors */
    uint32_t tx_size;     /* TX ring descriptors (0: no TX ring) */
    uint32_t bind_flags;  /* XDP_COPY / XDP_ZEROCOPY / XDP_USE_NEED_WAKEUP */
    uint32_t hugepages;   /* 1: try MAP_HUGETLB first */
};

struct xgw_xsk_stats {
    uint64_t rx_packets, rx_bytes, rx_bad_frames, rx_no_stamp, rx_wakeups;
    uint64_t tx_packets, tx_bytes, tx_kicks, tx_ring_full;
    /* kernel XDP_STATISTICS */
    uint64_t rx_dropped, rx_invalid_descs, tx_invalid_descs, rx_ring_full, rx_fill_ring_empty_descs,
        tx_ring_empty_descs;
    uint64_t rx_bad_csum; /* UDP checksum wrong (or missing over IPv6): dropped, as the kernel would */
};

struct xgw_xsk;
struct xgw_xsk *xgw_xsk_open(const char *ifname, uint32_t queue, const struct xgw_xsk_config *cfg,
                             char *err, size_t errlen);
void xgw_xsk_close(struct xgw_xsk *s);
int xgw_xsk_fd(struct xgw_xsk *s);
int xgw_xsk_zerocopy(struct xgw_xsk *s);
int xgw_xsk_hugepages(struct xgw_xsk *s);
void *xgw_xsk_area(struct xgw_xsk *s);
size_t xgw_xsk_area_size(struct xgw_xsk *s);
int xgw_xsk_update_map(struct xgw_xsk *s, int map_fd);
void xgw_xsk_set_heartbeat(struct xgw_xsk *s, uint64_t *slot);
void xgw_xsk_set_verify_csum(struct xgw_xsk *s, int on);
int xgw_rx_burst(struct xgw_xsk *s, uint32_t max, int64_t *offs, uint32_t *lens, uint64_t *ts,
                 uint16_t *hdr, uint16_t *dport, int64_t spin_ns);
int xgw_xsk_stats(struct xgw_xsk *s, struct xgw_xsk_stats *out);
int xgw_xsk_wait(struct xgw_xsk *s, int timeout_ms);
