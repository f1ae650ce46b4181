/*
 * AF_XDP socket + UMEM, owned by one C struct, with burst helpers so that one Python call moves a
 * whole batch of packets (no Python work per packet).
 *
 * UMEM layout: frames [0, rx_frames) feed the fill ring (receive), frames [rx_frames, nframes) are
 * a free stack for transmit. Received frames are *loaned* to Python (it reads payloads in place
 * through a numpy view of the UMEM) and go back to the fill ring at the start of the next burst.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_xdp.h>
#include <xdp/xsk.h>

#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef MAP_HUGETLB
#define MAP_HUGETLB 0x40000
#endif

/* The XDP program's metadata (struct xgw_meta, XGW_META_MAGIC) and the socket's insides. */
#include "xdpgw_rx.h"
#include "common.h"
#include "xsk_internal.h"

static void xgw_err(char *err, size_t errlen, const char *what, int e)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: %s (errno %d)", what, strerror(e), e);
}

/*
 * Give loaned frames back to the kernel through the fill ring. The kernel publishes how far it has
 * read the fill ring lazily (copy mode), so frames can come back through RX before their fill slots
 * look free: the ring is twice the frame pool, and if it is still short we hand back what fits and
 * keep the rest on loan for the next call.
 */
static int xgw_refill(struct xgw_xsk *s)
{
    uint32_t idx = 0, n = s->nloaned;
    if (!n)
        return 0;
    uint32_t room = xsk_prod_nb_free(&s->fq, n);
    if (room < n)
        n = room;
    if (!n || xsk_ring_prod__reserve(&s->fq, n, &idx) != n)
        return 0;
    for (uint32_t i = 0; i < n; i++)
        *xsk_ring_prod__fill_addr(&s->fq, idx + i) = s->loaned[i];
    xsk_ring_prod__submit(&s->fq, n);
    if (n < s->nloaned)
        memmove(s->loaned, s->loaned + n, (s->nloaned - n) * sizeof(uint64_t));
    s->nloaned -= n;
    return 0;
}

void xgw_xsk_close(struct xgw_xsk *s)
{
    if (!s)
        return;
    if (s->xsk)
        xsk_socket__delete(s->xsk);
    if (s->umem)
        xsk_umem__delete(s->umem);
    if (s->area)
        munmap(s->area, s->area_size);
    free(s->loaned);
    free(s->tx_free);
    free(s);
}

struct xgw_xsk *xgw_xsk_open(const char *ifname, uint32_t queue, const struct xgw_xsk_config *cfg,
                             char *err, size_t errlen)
{
    struct xgw_xsk *s = calloc(1, sizeof(*s));
    int ret;
    if (!s) {
        xgw_err(err, errlen, "calloc", ENOMEM);
        return NULL;
    }
    if (cfg->tx_frames >= cfg->nframes || (cfg->nframes & (cfg->nframes - 1))) {
        xgw_err(err, errlen, "bad UMEM geometry (nframes must be a power of two > tx_frames)", EINVAL);
        free(s);
        return NULL;
    }
    s->frame_size = cfg->frame_size;
    s->nframes = cfg->nframes;
    s->rx_frames = cfg->nframes - cfg->tx_frames;
    s->tx_size = cfg->tx_size;
    s->area_size = (size_t)cfg->nframes * cfg->frame_size;
    s->area = MAP_FAILED;
    if (cfg->hugepages) {
        s->area = mmap(NULL, s->area_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
        s->hugepages = s->area != MAP_FAILED;
    }
    if (s->area == MAP_FAILED)
        s->area = mmap(NULL, s->area_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (s->area == MAP_FAILED) {
        s->area = NULL;
        xgw_err(err, errlen, "mmap UMEM", errno);
        goto fail;
    }
    s->loaned = calloc(s->rx_frames, sizeof(uint64_t));
    s->tx_free = calloc(cfg->tx_frames ? cfg->tx_frames : 1, sizeof(uint64_t));
    if (!s->loaned || !s->tx_free) {
        xgw_err(err, errlen, "calloc", ENOMEM);
        goto fail;
    }

    struct xsk_umem_config ucfg = {
        .fill_size = s->rx_frames * 2, /* room to spare: see xgw_refill */
        .comp_size = cfg->tx_frames ? cfg->tx_frames : XSK_RING_CONS__DEFAULT_NUM_DESCS,
        .frame_size = cfg->frame_size,
        .frame_headroom = 0,
        .flags = 0,
    };
    ret = xsk_umem__create(&s->umem, s->area, s->area_size, &s->fq, &s->cq, &ucfg);
    if (ret) {
        s->umem = NULL;
        xgw_err(err, errlen, "xsk_umem__create", -ret);
        goto fail;
    }

    struct xsk_socket_config xcfg = {
        .rx_size = cfg->rx_size,
        .tx_size = cfg->tx_size,
        .libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD, /* our BCC program owns the XSKMAP */
        .xdp_flags = 0,
        .bind_flags = (uint16_t)cfg->bind_flags,
    };
    ret = xsk_socket__create(&s->xsk, ifname, queue, s->umem, cfg->rx_size ? &s->rx : NULL,
                             cfg->tx_size ? &s->tx : NULL, &xcfg);
    if (ret) {
        s->xsk = NULL;
        xgw_err(err, errlen, "xsk_socket__create", -ret);
        goto fail;
    }
    s->fd = xsk_socket__fd(s->xsk);

    struct xdp_options opts;
    socklen_t optlen = sizeof(opts);
    if (!getsockopt(s->fd, SOL_XDP, XDP_OPTIONS, &opts, &optlen))
        s->zerocopy = !!(opts.flags & XDP_OPTIONS_ZEROCOPY);

    /* Hand every RX frame to the kernel, keep the TX frames on our free stack. */
    for (uint32_t i = 0; i < s->rx_frames; i++)
        s->loaned[s->nloaned++] = (uint64_t)i * s->frame_size;
    xgw_refill(s);
    if (s->nloaned) {
        xgw_err(err, errlen, "fill ring", ENOSPC);
        goto fail;
    }
    for (uint32_t i = s->rx_frames; i < s->nframes; i++)
        s->tx_free[s->ntx_free++] = (uint64_t)i * s->frame_size;
    return s;
fail:
    xgw_xsk_close(s);
    return NULL;
}

int xgw_xsk_fd(struct xgw_xsk *s) { return s->fd; }
int xgw_xsk_zerocopy(struct xgw_xsk *s) { return s->zerocopy; }
int xgw_xsk_hugepages(struct xgw_xsk *s) { return s->hugepages; }
void *xgw_xsk_area(struct xgw_xsk *s) { return s->area; }
size_t xgw_xsk_area_size(struct xgw_xsk *s) { return s->area_size; }

/* Stamp `slot` (CLOCK_MONOTONIC ns) on every burst and spin: the XDP watchdog's proof of life. */
void xgw_xsk_set_heartbeat(struct xgw_xsk *s, uint64_t *slot) { s->heartbeat = slot; }

int xgw_xsk_update_map(struct xgw_xsk *s, int map_fd)
{
    return xsk_socket__update_xskmap(s->xsk, map_fd);
}

void xgw_xsk_set_verify_csum(struct xgw_xsk *s, int on) { s->verify_csum = on; }

/* Is the UDP checksum of the datagram at p[udp] right? IPv4: 0 means none (right); IPv6: 0 is wrong. */
static int xgw_udp_csum_ok(const uint8_t *p, uint32_t len, uint32_t l3, int v6, uint32_t udp)
{
    uint16_t ulen = (uint16_t)(p[udp + 4] << 8 | p[udp + 5]), be = htons(ulen);
    if (!p[udp + 6] && !p[udp + 7])
        return !v6;
    if (udp + ulen > len)
        return 0; /* cannot be checked: never redirected by our program */
    uint64_t sum = v6 ? xgw_sum_bytes(0, p + l3 + 8, 32) : xgw_sum_bytes(0, p + l3 + 12, 8); /* addresses */
    sum += htons(17) + (uint64_t)be;                                                       /* proto, length */
    uint16_t field, partial = (uint16_t)(xgw_fold(sum) ^ 0xffffu);
    memcpy(&field, p + udp + 6, 2);
    /* A local sender's CHECKSUM_PARTIAL (veth, offload left to a NIC that never ran): the field holds the
     * pseudo-header sum only. The kernel accepts such packets too; on a wire they cannot occur. */
    if (field == partial)
        return 1;
    return xgw_fold(xgw_sum_bytes(sum, p + udp, ulen)) == 0;
}

/* Offset and length of the UDP payload inside an Ethernet frame; -1 if it is not one. Also the IP header
 * offset (`l3`) and whether it is IPv6. */
static int xgw_udp_payload(const uint8_t *p, uint32_t len, uint32_t *off, uint32_t *plen, uint32_t *l3, int *v6)
{
    uint32_t o = ETH_HLEN;
    if (len < ETH_HLEN)
        return -1;
    uint16_t proto = (uint16_t)(p[12] << 8 | p[13]);
    if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
        if (len < o + 4)
            return -1;
        proto = (uint16_t)(p[o + 2] << 8 | p[o + 3]);
        o += 4;
    }
    *l3 = o;
    *v6 = proto == ETH_P_IPV6;
    if (proto == ETH_P_IP) {
        if (len < o + 20 || (p[o] >> 4) != 4)
            return -1;
        uint32_t ihl = (uint32_t)(p[o] & 0x0f) * 4;
        if (ihl < 20 || len < o + ihl || p[o + 9] != 17)
            return -1;
        o += ihl;
    } else if (proto == ETH_P_IPV6) {
        if (len < o + 40 || p[o + 6] != 17)
            return -1;
        o += 40;
    } else {
        return -1;
    }
    if (len < o + 8)
        return -1;
    uint32_t ulen = (uint32_t)(p[o + 4] << 8 | p[o + 5]);
    if (ulen < 8)
        return -1;
    o += 8;
    ulen -= 8;
    if (ulen > len - o) /* UDP length claims more than the frame holds: keep what is there */
        ulen = len - o;
    *off = o;
    *plen = ulen;
    return 0;
}

/*
 * Receive up to `max` packets. For each valid one: offs[k] = UDP payload offset in the UMEM area,
 * lens[k] = payload length, ts[k] = XDP receive stamp (0 if none), hdr[k] = header bytes in front of
 * the payload (frame start = offs - hdr), dport[k] = UDP destination port (`hdr`, `dport` may be NULL). With checksum verification on, packets with
 * a wrong UDP checksum are dropped (their frames recycled) and counted in rx_bad_csum. The previous burst's frames go back to
 * the fill ring first, so a returned batch stays valid until the next call. With nothing to read it
 * kicks the kernel if it asked for a wakeup and spins for up to spin_ns. Returns the count.
 */
int xgw_rx_burst(struct xgw_xsk *s, uint32_t max, int64_t *offs, uint32_t *lens, uint64_t *ts,
                 uint16_t *hdr, uint16_t *dport, int64_t spin_ns)
{
    uint32_t idx = 0, n, k = 0;
    int64_t deadline = 0;

    if (xgw_refill(s))
        return -ENOSPC;
    for (;;) {
        if (s->heartbeat)
            *s->heartbeat = (uint64_t)xgw_mono_ns();
        n = xsk_ring_cons__peek(&s->rx, max, &idx);
        if (n)
            break;
        if (xsk_ring_prod__needs_wakeup(&s->fq)) {
            recvfrom(s->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
            s->st.rx_wakeups++;
        }
        if (spin_ns <= 0)
            return 0;
        if (!deadline)
            deadline = xgw_mono_ns() + spin_ns;
        else if (xgw_mono_ns() >= deadline)
            return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct xdp_desc *d = xsk_ring_cons__rx_desc(&s->rx, idx + i);
        uint64_t addr = xsk_umem__add_offset_to_addr(d->addr);
        uint8_t *frame = s->area + addr;
        uint32_t off, plen, l3;
        int v6;
        s->loaned[s->nloaned++] = addr - (addr % s->frame_size);
        if (xgw_udp_payload(frame, d->len, &off, &plen, &l3, &v6)) {
            s->st.rx_bad_frames++;
            continue;
        }
        if (s->verify_csum && !xgw_udp_csum_ok(frame, d->len, l3, v6, off - 8)) {
            s->st.rx_bad_csum++;
            continue;
        }
        struct xgw_meta *m = (struct xgw_meta *)(frame - sizeof(struct xgw_meta));
        if ((addr % s->frame_size) >= sizeof(*m) && m->magic == XGW_META_MAGIC) {
            ts[k] = m->rx_ns;
            m->magic = 0; /* frames are reused: never read a stale stamp */
        } else {
            ts[k] = 0;
            s->st.rx_no_stamp++;
        }
        offs[k] = (int64_t)(addr + off);
        lens[k] = plen;
        if (hdr)
            hdr[k] = (uint16_t)off;
        if (dport) /* the UDP header ends at the payload: destination port at bytes 2-3 of its 8 */
            dport[k] = (uint16_t)(frame[off - 6] << 8 | frame[off - 5]);
        s->st.rx_bytes += d->len;
        k++;
    }
    xsk_ring_cons__release(&s->rx, n);
    s->st.rx_packets += k;
    return (int)k;
}

void xgw_tx_reclaim(struct xgw_xsk *s)
{
    uint32_t idx = 0;
    uint32_t n = xsk_ring_cons__peek(&s->cq, s->nframes, &idx);
    for (uint32_t i = 0; i < n; i++)
        s->tx_free[s->ntx_free++] = *xsk_ring_cons__comp_addr(&s->cq, idx + i);
    if (n)
        xsk_ring_cons__release(&s->cq, n);
}

int xgw_xsk_stats(struct xgw_xsk *s, struct xgw_xsk_stats *out)
{
    struct xdp_statistics k;
    socklen_t optlen = sizeof(k);
    memset(&k, 0, sizeof(k));
    *out = s->st;
    if (getsockopt(s->fd, SOL_XDP, XDP_STATISTICS, &k, &optlen))
        return -errno;
    out->rx_dropped = k.rx_dropped;
    out->rx_invalid_descs = k.rx_invalid_descs;
    out->tx_invalid_descs = k.tx_invalid_descs;
    out->rx_ring_full = k.rx_ring_full;
    out->rx_fill_ring_empty_descs = k.rx_fill_ring_empty_descs;
    out->tx_ring_empty_descs = k.tx_ring_empty_descs;
    return 0;
}

/* Block until the socket is readable or timeout_ms passes (kicks the fill ring first). */
int xgw_xsk_wait(struct xgw_xsk *s, int timeout_ms)
{
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    if (xgw_refill(s))
        return -ENOSPC;
    int r = poll(&p, 1, timeout_ms);
    return r < 0 ? -errno : r;
}
