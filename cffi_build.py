"""cffi API-mode build of ``xdpgw._xsk``: the whole C boundary of xdpgw.

The declarations Python may call are below, one block per area; the C bodies live in ``csrc/`` (one
file per block) and are compiled into a single extension linked against libxdp and libbpf. Python
wrappers (``xdpgw.transport.*``, ``xdpgw.protocol.*``) own every pointer handed out here.
"""

from pathlib import Path

from cffi import FFI

CSRC = Path(__file__).resolve().parent / "csrc"

# --- AF_XDP socket and UMEM (csrc/xsk.c) -----------------------------------------------------------
CDEF_XSK = """
struct xgw_xsk_config {
    uint32_t nframes, tx_frames, frame_size, rx_size, tx_size, bind_flags, hugepages;
};
struct xgw_xsk_stats {
    uint64_t rx_packets, rx_bytes, rx_bad_frames, rx_no_stamp, rx_wakeups;
    uint64_t tx_packets, tx_bytes, tx_kicks, tx_ring_full;
    uint64_t rx_dropped, rx_invalid_descs, tx_invalid_descs, rx_ring_full, rx_fill_ring_empty_descs,
        tx_ring_empty_descs;
    uint64_t rx_bad_csum;
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
int xgw_tx_burst(struct xgw_xsk *s, const uint8_t *buf, const int64_t *offs, const uint32_t *lens,
                 uint32_t n);
uint32_t xgw_tx_pending(struct xgw_xsk *s);
int xgw_xsk_stats(struct xgw_xsk *s, struct xgw_xsk_stats *out);
int xgw_xsk_wait(struct xgw_xsk *s, int timeout_ms);

#define XDP_COPY ...
#define XDP_ZEROCOPY ...
#define XDP_USE_NEED_WAKEUP ...
"""

# --- BPF object helpers via libbpf (csrc/bpfobj.c) -------------------------------------------------
CDEF_BPF = """
int xgw_prog_name_by_id(uint32_t id, char *name, size_t namelen);
int xgw_obj_pin(int fd, const char *path);
int xgw_obj_get(const char *path);
void xgw_close_fd(int fd);
int xgw_percpu_sum(int map_fd, uint32_t nkeys, uint32_t ncpu, uint64_t *scratch, uint64_t *out);
int xgw_prog_map_fd(uint32_t prog_id, const char *name);
int xgw_btf_member_offset(const char *sname, const char *member);
"""

# --- kernel sockets: batched recvmmsg/sendmmsg with timestamps (csrc/net.c) ------------------------
CDEF_NET = """
struct xgw_mmsg;
struct xgw_rx_info { uint32_t truncated, no_stamp; uint64_t bytes; };
struct xgw_tx_info { uint32_t sent, errors, refused; int32_t last_errno; uint64_t bytes; };
struct xgw_mmsg *xgw_mmsg_new(uint32_t cap);
void xgw_mmsg_free(struct xgw_mmsg *m);
int xgw_net_timestamping(int fd);
int64_t xgw_realtime_offset_ns(void);
int xgw_recvmmsg(int fd, struct xgw_mmsg *m, uint8_t *buf, uint32_t slot, uint32_t max, int64_t *offs,
                 uint32_t *lens, uint64_t *ts, int64_t timeout_ns, struct xgw_rx_info *info);
int xgw_sendmmsg(int fd, struct xgw_mmsg *m, const uint8_t *buf, const int64_t *offs, const uint32_t *lens,
                 uint32_t n, int64_t stall_ns, struct xgw_tx_info *info);
int64_t xgw_sock_drops(int fd);

#define XGW_SO_RCVBUFFORCE ...
#define XGW_SO_SNDBUFFORCE ...
#define XGW_SO_BUSY_POLL ...
"""

# --- MoldUDP64 block splitting (csrc/mold.c) -------------------------------------------------------
CDEF_MOLD = """
struct xgw_mold_scratch {
    const uint8_t *sizes;
    int64_t cap_msgs;
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
    int64_t *info;
    int64_t bstart[256], istart[256];
};
int64_t xgw_mold_split(struct xgw_mold_scratch *s, const uint8_t *buf, const int64_t *offs,
                       const uint32_t *lens, uint32_t npkts);
void xgw_mold_gather(struct xgw_mold_scratch *s, const uint8_t *buf, uint8_t *out, int32_t *order);
"""

# --- BPF_PROG_RUN live-frames generator for `xdpgw blast` (csrc/blast.c) ----------------------------
CDEF_BLAST = """
int xgw_blast_run(int prog_fd, uint32_t ifindex, uint32_t queue, const uint8_t *frame, uint32_t len,
                  uint32_t repeat, uint32_t batch_size, uint32_t *retval);
int xgw_blast_paced(int prog_fd, uint32_t ifindex, uint32_t queue, const uint8_t *frame, uint32_t len,
                    uint32_t batch_size, uint64_t t0_ns, double pps, uint64_t until, uint32_t max_per_call,
                    uint64_t *sent);
int xgw_xdp_link(int prog_fd, int ifindex);
"""

# --- AF_XDP send path: Ethernet/IP/UDP frames with checksums, straight into UMEM (csrc/frames.c) ---
CDEF_FRAMES = """
struct xgw_tx_hdr { uint8_t tmpl[128]; uint32_t hlen, l3off, ipv6, max_payload, ip_id; };
struct xgw_tx_result { uint32_t sent, oversize, dropped, kicks, stalled; int32_t last_errno; uint64_t bytes; };
int xgw_frames_build(struct xgw_tx_hdr *h, const uint8_t *buf, const int64_t *offs, const uint32_t *lens,
                     uint32_t n, uint8_t *out, uint32_t slot, int64_t *out_offs, uint32_t *out_lens);
int xgw_tx_frames(struct xgw_xsk *s, struct xgw_tx_hdr *h, const uint8_t *buf, const int64_t *offs,
                  const uint32_t *lens, uint32_t n, int64_t stall_ns, struct xgw_tx_result *res);
"""

# --- latency histogram hot path (csrc/hist.c) -------------------------------------------------------
CDEF_HIST = """
struct xgw_hist_batch { int64_t n, min, max, rejected, saturated; double mean, m2; };
void xgw_hist_since(int64_t *counts, int64_t ncounts, uint32_t sub_bits, int64_t highest, int64_t now,
                    const uint64_t *stamps, uint32_t nstamps, struct xgw_hist_batch *out);
"""

# --- in-order fast path (csrc/fastpath.c): its header is the cdef, read as is -----------------------
CDEF_FAST = (CSRC / "fastpath.h").read_text()

SOURCES = ["xsk.c", "bpfobj.c", "net.c", "mold.c", "blast.c", "frames.c", "hist.c", "fastpath.c"]

ffibuilder = FFI()
ffibuilder.cdef(CDEF_XSK + CDEF_BPF + CDEF_NET + CDEF_MOLD + CDEF_BLAST + CDEF_FRAMES + CDEF_HIST + CDEF_FAST)
ffibuilder.set_source(
    "xdpgw._xsk",
    "".join(f'#include "{name}"\n' for name in SOURCES),
    include_dirs=[str(CSRC)],
    libraries=["xdp", "bpf"],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
    depends=[str(CSRC / name) for name in SOURCES] + [str(CSRC / "fastpath.h")],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
