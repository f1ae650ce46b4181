/* The AF_XDP send path (frames.c): whole Ethernet/IPv4|IPv6/UDP frames for a burst of payloads, built
 * from a header template with lengths, IPv4 id and checksums patched in C.
 *
 * This header is the cffi cdef (xsk_build.py reads it) and #included by frames.c. Python
 * (xdpgw.transport.xdp.tx) fills a struct xgw_tx_hdr once per destination and owns every buffer.
 */

/* One destination: the header template and where its layers start. Filled by Python once. */
struct xgw_tx_hdr {
    uint8_t tmpl[128];     /* Ethernet (+ VLAN) + IPv4/IPv6 + UDP header, length fields and checksums 0 */
    uint32_t hlen;         /* template bytes (= payload offset in a frame) */
    uint32_t l3off;        /* IP header offset */
    uint32_t ipv6;         /* 0: IPv4 (20-byte header), 1: IPv6 (40 bytes) */
    uint32_t max_payload;  /* larger payloads are skipped and counted as oversize */
    uint32_t ip_id;        /* next IPv4 identification (advanced per frame, low 16 bits used) */
};

struct xgw_tx_result {
    uint32_t sent;       /* frames submitted to the TX ring */
    uint32_t oversize;   /* payloads skipped: too large for a frame / the MTU */
    uint32_t dropped;    /* frames the device refused at transmit (kick returned EBUSY) */
    uint32_t kicks;      /* sendto() wakeups */
    uint32_t stalled;    /* 1: gave up after stall_ns without progress */
    int32_t last_errno;  /* last unexpected sendto() errno (0: none) */
    uint64_t bytes;      /* frame bytes submitted */
};

struct xgw_xsk;

/* Build frames for n payloads into `out` (one `slot`-byte slot each, sans-IO: tests and pcap tools).
 * Oversize payloads get out_lens 0. Advances h->ip_id. Returns the number of frames built. */
int xgw_frames_build(struct xgw_tx_hdr *h, const uint8_t *buf, const int64_t *offs, const uint32_t *lens,
                     uint32_t n, uint8_t *out, uint32_t slot, int64_t *out_offs, uint32_t *out_lens);
/* Send n payloads as frames to the destination of `h` straight into UMEM (see frames.c). Returns how many
 * payloads from the front were consumed (sent, or skipped as oversize), or -errno. */
int xgw_tx_frames(struct xgw_xsk *s, struct xgw_tx_hdr *h, const uint8_t *buf, const int64_t *offs,
                  const uint32_t *lens, uint32_t n, int64_t stall_ns, struct xgw_tx_result *res);
