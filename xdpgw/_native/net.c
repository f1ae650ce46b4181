/* Kernel-socket transport helpers: batched recvmmsg/sendmmsg with SO_TIMESTAMPING.
 *
 * One Python call moves a whole burst: xgw_recvmmsg() does at most one ppoll() plus one recvmmsg()
 * (a second only if the first raced with poll) and parses every message's control data in C;
 * xgw_sendmmsg() hands a whole Batch to sendmmsg(). The mmsghdr/iovec/control scratch lives in a
 * struct xgw_mmsg allocated once per socket (no allocation per call).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* recvmmsg, sendmmsg, ppoll */
#endif
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>

#include "net.h"

#ifndef SO_TIMESTAMPING_OLD
#define SO_TIMESTAMPING_OLD 37
#endif
#ifndef SO_TIMESTAMPING_NEW
#define SO_TIMESTAMPING_NEW 65
#endif
#ifndef SO_BUSY_POLL
#define SO_BUSY_POLL 46
#endif
#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif

/* Room per message for SCM_TIMESTAMPING (3 timespecs), with slack for other cmsgs. */
#define XGW_CTRL_LEN 128

struct xgw_mmsg {
    uint32_t cap;
    struct mmsghdr *msgs;
    struct iovec *iov;
    uint8_t *ctrl; /* cap * XGW_CTRL_LEN */
};

struct xgw_mmsg *xgw_mmsg_new(uint32_t cap)
{
    if (cap == 0 || cap > UIO_MAXIOV)
        return NULL;
    struct xgw_mmsg *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->cap = cap;
    m->msgs = calloc(cap, sizeof(*m->msgs));
    m->iov = calloc(cap, sizeof(*m->iov));
    m->ctrl = calloc(cap, XGW_CTRL_LEN);
    if (!m->msgs || !m->iov || !m->ctrl) {
        free(m->msgs);
        free(m->iov);
        free(m->ctrl);
        free(m);
        return NULL;
    }
    return m;
}

void xgw_mmsg_free(struct xgw_mmsg *m)
{
    if (!m)
        return;
    free(m->msgs);
    free(m->iov);
    free(m->ctrl);
    free(m);
}

/* Software RX stamps on every datagram (SCM_TIMESTAMPING, CLOCK_REALTIME). 0 or -errno. */
int xgw_net_timestamping(int fd)
{
    int flags = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
    if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof(flags)) < 0)
        return -errno;
    return 0;
}

static int64_t ts_ns(clockid_t clk)
{
    struct timespec t;
    clock_gettime(clk, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* CLOCK_REALTIME - CLOCK_MONOTONIC, sampled between two monotonic reads (error ~ tens of ns). */
static int64_t xgw_realtime_offset_ns(void)
{
    int64_t m0 = ts_ns(CLOCK_MONOTONIC);
    int64_t r = ts_ns(CLOCK_REALTIME);
    int64_t m1 = ts_ns(CLOCK_MONOTONIC);
    return r - (m0 + (m1 - m0) / 2);
}

static int wait_fd(int fd, short events, int64_t timeout_ns)
{
    struct pollfd p = {.fd = fd, .events = events};
    struct timespec t, *tp = NULL;
    if (timeout_ns >= 0) {
        t.tv_sec = timeout_ns / 1000000000LL;
        t.tv_nsec = timeout_ns % 1000000000LL;
        tp = &t;
    }
    int r = ppoll(&p, 1, tp, NULL);
    if (r < 0)
        return -errno;
    return r;
}

/*
 * Receive up to max (<= m->cap) datagrams into buf (max * slot bytes, message i at i * slot).
 * Truncated datagrams are counted and left out; the kept ones are compacted into offs/lens/ts in
 * arrival order, ts on CLOCK_MONOTONIC (0 when the kernel gave no stamp). When nothing is queued,
 * waits up to timeout_ns (-1: forever, 0: not at all) with one ppoll().
 * Returns the number kept (0: nothing in time or interrupted by a signal), or -errno.
 */
int xgw_recvmmsg(int fd, struct xgw_mmsg *m, uint8_t *buf, uint32_t slot, uint32_t max, int64_t *offs,
                 uint32_t *lens, uint64_t *ts, int64_t timeout_ns, struct xgw_rx_info *info)
{
    memset(info, 0, sizeof(*info));
    if (max > m->cap)
        max = m->cap;
    if (max == 0)
        return 0;
    for (uint32_t i = 0; i < max; i++) {
        m->iov[i].iov_base = buf + (size_t)i * slot;
        m->iov[i].iov_len = slot;
        struct msghdr *h = &m->msgs[i].msg_hdr;
        h->msg_name = NULL;
        h->msg_namelen = 0;
        h->msg_iov = &m->iov[i];
        h->msg_iovlen = 1;
        h->msg_control = m->ctrl + (size_t)i * XGW_CTRL_LEN;
        h->msg_controllen = XGW_CTRL_LEN;
        h->msg_flags = 0;
    }
    int n = recvmmsg(fd, m->msgs, max, MSG_DONTWAIT, NULL);
    for (int tries = 0; n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && timeout_ns != 0; tries++) {
        if (tries > 0) /* poll said readable but another reader took it: report an empty burst */
            return 0;
        int r = wait_fd(fd, POLLIN, timeout_ns);
        if (r == -EINTR || r == 0)
            return 0;
        if (r < 0)
            return r;
        n = recvmmsg(fd, m->msgs, max, MSG_DONTWAIT, NULL);
    }
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -errno;

    int64_t off = xgw_realtime_offset_ns();
    uint32_t k = 0;
    for (int i = 0; i < n; i++) {
        struct msghdr *h = &m->msgs[i].msg_hdr;
        uint64_t stamp = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
            if (c->cmsg_level != SOL_SOCKET)
                continue;
            if ((c->cmsg_type == SO_TIMESTAMPING_OLD || c->cmsg_type == SO_TIMESTAMPING_NEW) &&
                c->cmsg_len >= CMSG_LEN(sizeof(struct scm_timestamping))) {
                struct scm_timestamping t;
                memcpy(&t, CMSG_DATA(c), sizeof(t));
                int64_t rt = (int64_t)t.ts[0].tv_sec * 1000000000LL + t.ts[0].tv_nsec;
                if (rt > off)
                    stamp = (uint64_t)(rt - off);
            }
        }
        if (h->msg_flags & MSG_TRUNC) {
            info->truncated++;
            continue;
        }
        if (!stamp)
            info->no_stamp++;
        offs[k] = (int64_t)i * slot;
        lens[k] = m->msgs[i].msg_len;
        ts[k] = stamp;
        info->bytes += m->msgs[i].msg_len;
        k++;
    }
    return (int)k;
}

/*
 * Send payloads [0, n) of a batch (buf + offs[i], lens[i]) on a connected UDP socket, in order, with
 * as few sendmmsg() calls as the kernel allows. A full socket buffer (EAGAIN/ENOBUFS) is waited out
 * up to stall_ns without progress; a datagram the kernel refuses for good (EMSGSIZE, EINVAL, ...) is
 * dropped and counted; a pending ICMP error (ECONNREFUSED, ...) is counted and the datagram retried.
 * Returns how many payloads from the front were consumed (sent + dropped); the rest can be retried.
 */
int xgw_sendmmsg(int fd, struct xgw_mmsg *m, const uint8_t *buf, const int64_t *offs, const uint32_t *lens,
                 uint32_t n, int64_t stall_ns, struct xgw_tx_info *info)
{
    memset(info, 0, sizeof(*info));
    uint32_t done = 0;
    int refused_in_a_row = 0;
    while (done < n) {
        uint32_t chunk = n - done < m->cap ? n - done : m->cap;
        for (uint32_t i = 0; i < chunk; i++) {
            m->iov[i].iov_base = (void *)(buf + offs[done + i]);
            m->iov[i].iov_len = lens[done + i];
            struct msghdr *h = &m->msgs[i].msg_hdr;
            memset(h, 0, sizeof(*h));
            h->msg_iov = &m->iov[i];
            h->msg_iovlen = 1;
        }
        int r = sendmmsg(fd, m->msgs, chunk, MSG_DONTWAIT);
        if (r > 0) {
            for (int i = 0; i < r; i++)
                info->bytes += lens[done + i];
            info->sent += r;
            done += r;
            refused_in_a_row = 0;
            continue;
        }
        int e = r < 0 ? errno : EAGAIN;
        info->last_errno = e;
        switch (e) {
        case EINTR:
            continue;
        case EAGAIN:
        case ENOBUFS:
            if (stall_ns == 0)
                return (int)done;
            if (e == ENOBUFS) { /* device queue full: not pollable, back off briefly */
                struct timespec t = {0, 50000};
                nanosleep(&t, NULL);
                stall_ns -= 50000;
                if (stall_ns <= 0)
                    return (int)done;
                continue;
            }
            {
                int64_t t0 = ts_ns(CLOCK_MONOTONIC);
                int w = wait_fd(fd, POLLOUT, stall_ns);
                if (w == 0 || (w < 0 && w != -EINTR))
                    return (int)done;
                stall_ns -= ts_ns(CLOCK_MONOTONIC) - t0;
                if (stall_ns <= 0)
                    stall_ns = 1;
            }
            continue;
        case ECONNREFUSED:
        case EHOSTUNREACH:
        case ENETUNREACH:
        case EHOSTDOWN:
        case ENETDOWN:
            /* An earlier datagram's ICMP error, reported now: this one was not sent. Retry it,
             * but not forever (a persistent route error would loop). */
            info->refused++;
            if (++refused_in_a_row < 4)
                continue;
            /* fall through: treat as permanent for this datagram */
        default:
            info->errors++;
            done++;
            refused_in_a_row = 0;
            continue;
        }
    }
    return (int)done;
}

/* getsockopt(SO_MEMINFO)[SK_MEMINFO_DROPS]: datagrams the kernel dropped for this socket. */
int64_t xgw_sock_drops(int fd)
{
    uint32_t mem[16];
    socklen_t len = sizeof(mem);
    memset(mem, 0, sizeof(mem));
    if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) < 0)
        return -errno;
    if (len < 9 * sizeof(uint32_t))
        return -ENOTSUP;
    return mem[8]; /* SK_MEMINFO_DROPS */
}
