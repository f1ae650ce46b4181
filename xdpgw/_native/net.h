/* Kernel-socket transport helpers (net.c): batched recvmmsg/sendmmsg with SO_TIMESTAMPING, one call per
 * burst. The cffi cdef of the `_net` binding (net_build.py reads it) and #included by net.c. Python
 * (xdpgw.transport.socket) owns the sockets, every buffer and each struct xgw_mmsg (xgw_mmsg_new /
 * xgw_mmsg_free through ffi.gc).
 */

/* cdef-only: socket options Python sets with setsockopt, values from <sys/socket.h>
#define SO_RCVBUFFORCE ...
#define SO_SNDBUFFORCE ...
#define SO_BUSY_POLL ...
cdef-only */

/* mmsghdr/iovec/control scratch for up to `cap` datagrams, allocated once per socket. */
struct xgw_mmsg;

struct xgw_rx_info {
    uint32_t truncated; /* datagrams longer than the slot: dropped from the batch */
    uint32_t no_stamp;  /* kept datagrams without a software receive stamp (ts = 0) */
    uint64_t bytes;     /* payload bytes kept */
};

struct xgw_tx_info {
    uint32_t sent;     /* datagrams accepted by the kernel */
    uint32_t errors;   /* datagrams dropped for a permanent error (EMSGSIZE, ...) */
    uint32_t refused;  /* pending ICMP errors (ECONNREFUSED, ...) reported and retried */
    int32_t last_errno;
    uint64_t bytes;    /* payload bytes sent */
};

struct xgw_mmsg *xgw_mmsg_new(uint32_t cap);
void xgw_mmsg_free(struct xgw_mmsg *m);
int xgw_net_timestamping(int fd);
int xgw_recvmmsg(int fd, struct xgw_mmsg *m, uint8_t *buf, uint32_t slot, uint32_t max, int64_t *offs,
                 uint32_t *lens, uint64_t *ts, int64_t timeout_ns, struct xgw_rx_info *info);
int xgw_sendmmsg(int fd, struct xgw_mmsg *m, const uint8_t *buf, const int64_t *offs, const uint32_t *lens,
                 uint32_t n, int64_t stall_ns, struct xgw_tx_info *info);
int64_t xgw_sock_drops(int fd);
