/*
 * The AF_XDP send path: whole Ethernet/IPv4|IPv6/UDP frames for a burst of payloads, written straight
 * into free UMEM TX frames (header template + payload, lengths, IPv4 id and checksums patched in C),
 * submitted to the TX ring, kicked, and flushed. One Python call per burst.
 *
 * Compiled in the same translation unit as csrc/xsk.c (see cffi_build.py) and uses its `struct xgw_xsk`
 * (TX ring, free-frame stack, stats) and `xgw_tx_reclaim()`: keep in step with that file.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <arpa/inet.h>

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

static inline uint64_t xgw_sum_bytes(uint64_t sum, const uint8_t *p, uint32_t len)
{
    /* One's-complement sum is byte-order independent: add native 32-bit words, fold later. */
    while (len >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        sum += w;
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        sum += w;
        p += 2;
        len -= 2;
    }
    if (len) {
        uint16_t w = 0;
        memcpy(&w, p, 1); /* odd tail, padded with a zero byte */
        sum += w;
    }
    return sum;
}

static inline uint16_t xgw_fold(uint64_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* Frame = template + payload at `f`; patch lengths, id and checksums. Returns the frame length. */
static uint32_t xgw_frame_fill(const struct xgw_tx_hdr *h, uint8_t *f, const uint8_t *payload, uint32_t len,
                               uint16_t id)
{
    uint8_t *ip = f + h->l3off;
    uint32_t iplen = h->ipv6 ? 40 : 20;
    uint8_t *udp = ip + iplen;
    uint16_t ulen = (uint16_t)(8 + len), csum, be;
    uint64_t sum;

    memcpy(f, h->tmpl, h->hlen);
    memcpy(f + h->hlen, payload, len);
    be = htons(ulen);
    memcpy(udp + 4, &be, 2);
    memset(udp + 6, 0, 2);
    if (h->ipv6) {
        memcpy(ip + 4, &be, 2); /* payload length */
        sum = xgw_sum_bytes(0, ip + 8, 32);
    } else {
        uint16_t tot = htons((uint16_t)(20 + ulen)), bid = htons(id);
        memcpy(ip + 2, &tot, 2);
        memcpy(ip + 4, &bid, 2);
        memset(ip + 10, 0, 2);
        csum = xgw_fold(xgw_sum_bytes(0, ip, 20));
        memcpy(ip + 10, &csum, 2);
        sum = xgw_sum_bytes(0, ip + 12, 8);
    }
    sum += htons(17) + (uint64_t)be; /* pseudo header: protocol and UDP length */
    sum = xgw_sum_bytes(sum, udp, ulen);
    csum = xgw_fold(sum);
    if (!csum)
        csum = 0xffff; /* 0 means "no checksum" on the wire */
    memcpy(udp + 6, &csum, 2);
    return h->hlen + len;
}

/*
 * Build frames for n payloads into `out` (one `slot`-byte slot each, sans-IO: tests and pcap tools).
 * Oversize payloads get out_lens 0. Advances h->ip_id. Returns the number of frames built.
 */
int xgw_frames_build(struct xgw_tx_hdr *h, const uint8_t *buf, const int64_t *offs, const uint32_t *lens,
                     uint32_t n, uint8_t *out, uint32_t slot, int64_t *out_offs, uint32_t *out_lens)
{
    int built = 0;
    for (uint32_t i = 0; i < n; i++) {
        out_offs[i] = (int64_t)i * slot;
        if (lens[i] > h->max_payload || h->hlen + lens[i] > slot) {
            out_lens[i] = 0;
            continue;
        }
        out_lens[i] = xgw_frame_fill(h, out + (size_t)i * slot, buf + offs[i], lens[i], (uint16_t)h->ip_id++);
        built++;
    }
    return built;
}

static int64_t xgw_frames_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Descriptors submitted to the TX ring that the kernel has not taken yet. */
static inline uint32_t xgw_tx_unread(struct xgw_xsk *s)
{
    return s->tx.cached_prod - __atomic_load_n(s->tx.consumer, __ATOMIC_ACQUIRE);
}

static int xgw_tx_kick(struct xgw_xsk *s, struct xgw_tx_result *res)
{
    res->kicks++;
    s->st.tx_kicks++;
    if (sendto(s->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
        return 0;
    int e = errno;
    if (e == EBUSY) {
        res->dropped++; /* the device dropped one frame (NET_XMIT_DROP): completed, not sent */
        return 0;
    }
    if (e == EAGAIN || e == ENOBUFS || e == EINTR)
        return 0; /* per-call budget used up / no memory right now: kick again */
    res->last_errno = e;
    return (e == ENETDOWN || e == ENXIO || e == EBADF || e == EINVAL) ? -e : 0;
}

/*
 * Send n payloads (buf + offs[i], lens[i]) as frames to the destination of `h`. Frames are written
 * directly into free UMEM TX frames; completions are recycled; the socket is kicked as needed. Waits
 * until the kernel has taken every descriptor, giving up after stall_ns without progress.
 * Returns how many payloads from the front were consumed (sent, or skipped as oversize), or -errno.
 */
int xgw_tx_frames(struct xgw_xsk *s, struct xgw_tx_hdr *h, const uint8_t *buf, const int64_t *offs,
                  const uint32_t *lens, uint32_t n, int64_t stall_ns, struct xgw_tx_result *res)
{
    uint32_t done = 0, idx = 0, tx_total = s->nframes - s->rx_frames;
    int64_t last = xgw_frames_now();
    int err;

    memset(res, 0, sizeof(*res));
    if (!s->tx.ring || !tx_total)
        return -EINVAL;
    for (;;) {
        uint32_t free_before = s->ntx_free, k, want = n - done;
        xgw_tx_reclaim(s);
        int progress = s->ntx_free > free_before;
        k = want < s->ntx_free ? want : s->ntx_free;
        if (k && xsk_ring_prod__reserve(&s->tx, k, &idx) != k) {
            k = xsk_prod_nb_free(&s->tx, k);
            if (k && xsk_ring_prod__reserve(&s->tx, k, &idx) != k)
                k = 0;
        }
        if (k) {
            uint32_t used = 0;
            for (uint32_t i = 0; i < k; i++) {
                uint32_t j = done + i, len = lens[j];
                if (len > h->max_payload || h->hlen + len > s->frame_size) {
                    res->oversize++;
                    continue;
                }
                uint64_t addr = s->tx_free[--s->ntx_free];
                struct xdp_desc *d = xsk_ring_prod__tx_desc(&s->tx, idx + used);
                d->addr = addr;
                d->len = xgw_frame_fill(h, s->area + addr, buf + offs[j], len, (uint16_t)h->ip_id++);
                d->options = 0;
                res->bytes += d->len;
                used++;
            }
            if (used < k) /* give back the slots of skipped payloads (nothing was published yet) */
                s->tx.cached_prod -= k - used;
            if (used)
                xsk_ring_prod__submit(&s->tx, used);
            res->sent += used;
            s->st.tx_packets += used;
            done += k;
            progress = 1;
        } else if (done < n) {
            s->st.tx_ring_full++;
        }
        uint32_t unread = xgw_tx_unread(s);
        if (done == n && !unread)
            break;
        if (unread || xsk_ring_prod__needs_wakeup(&s->tx)) {
            if ((err = xgw_tx_kick(s, res)) < 0)
                return err;
            if (xgw_tx_unread(s) < unread)
                progress = 1;
        }
        int64_t now = xgw_frames_now();
        if (progress) {
            last = now;
        } else if (now - last > stall_ns) {
            res->stalled = 1;
            break;
        }
    }
    s->st.tx_bytes += res->bytes;
    xgw_tx_reclaim(s);
    return (int)done;
}
