/*
 * The AF_XDP send path (frames.h): whole Ethernet/IPv4|IPv6/UDP frames for a burst of payloads, written
 * straight into free UMEM TX frames (header template + payload, lengths, IPv4 id and checksums patched in
 * C), submitted to the TX ring, kicked, and flushed. One Python call per burst.
 *
 * Uses the socket's insides (xsk_internal.h: TX ring, free-frame stack, stats, xgw_tx_reclaim) and drives
 * the TX ring through libxdp's ring API only (xsk_prod_nb_free, xsk_ring_prod__reserve/submit).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include "common.h"
#include "frames.h"
#include "xsk_internal.h"

/* Does a payload of `len` bytes not fit a frame of `room` bytes (or exceed the destination's MTU)? */
static inline int xgw_oversize(const struct xgw_tx_hdr *h, uint32_t len, uint32_t room)
{
    return len > h->max_payload || h->hlen + len > room;
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

int xgw_frames_build(struct xgw_tx_hdr *h, const uint8_t *buf, const int64_t *offs, const uint32_t *lens,
                     uint32_t n, uint8_t *out, uint32_t slot, int64_t *out_offs, uint32_t *out_lens)
{
    int built = 0;
    for (uint32_t i = 0; i < n; i++) {
        out_offs[i] = (int64_t)i * slot;
        if (xgw_oversize(h, lens[i], slot)) {
            out_lens[i] = 0;
            continue;
        }
        out_lens[i] = xgw_frame_fill(h, out + (size_t)i * slot, buf + offs[i], lens[i], (uint16_t)h->ip_id++);
        built++;
    }
    return built;
}

/* Descriptors submitted to the TX ring that the kernel has not taken yet: the ring's size less its free
 * entries (xsk_prod_nb_free refreshes them from the kernel unless the ring is known to be empty). Every
 * reservation here is submitted at once, so reserved equals submitted whenever this is asked. */
static inline uint32_t xgw_tx_unread(struct xgw_xsk *s)
{
    return s->tx_size - xsk_prod_nb_free(&s->tx, s->tx_size);
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
    int64_t last = xgw_mono_ns();
    int err;

    memset(res, 0, sizeof(*res));
    if (!s->tx_size || !tx_total)
        return -EINVAL;
    for (;;) {
        uint32_t free_before = s->ntx_free, want = n - done;
        xgw_tx_reclaim(s);
        int progress = s->ntx_free > free_before;
        /* Room: free UMEM frames and free TX ring entries. Oversize payloads take neither, so the slots
         * reserved are exactly the frames written (the ring API has no way to hand back a reservation). */
        uint32_t room = want < s->ntx_free ? want : s->ntx_free, take = 0, used = 0;
        uint32_t ring = room ? xsk_prod_nb_free(&s->tx, room) : 0;
        if (ring < room)
            room = ring;
        for (; take < want && used < room; take++) {
            if (xgw_oversize(h, lens[done + take], s->frame_size))
                res->oversize++;
            else
                used++;
        }
        if (take) {
            if (used && xsk_ring_prod__reserve(&s->tx, used, &idx) != used)
                return -EIO; /* cannot happen: the room was just counted */
            for (uint32_t i = 0, k = 0; i < take; i++) {
                uint32_t j = done + i, len = lens[j];
                if (xgw_oversize(h, len, s->frame_size))
                    continue;
                uint64_t addr = s->tx_free[--s->ntx_free];
                struct xdp_desc *d = xsk_ring_prod__tx_desc(&s->tx, idx + k++);
                d->addr = addr;
                d->len = xgw_frame_fill(h, s->area + addr, buf + offs[j], len, (uint16_t)h->ip_id++);
                d->options = 0;
                res->bytes += d->len;
            }
            if (used)
                xsk_ring_prod__submit(&s->tx, used);
            res->sent += used;
            s->st.tx_packets += used;
            done += take;
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
        int64_t now = xgw_mono_ns();
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
