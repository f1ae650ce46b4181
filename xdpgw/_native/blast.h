/* BPF_PROG_RUN in live-frames mode (blast.c), the kernel-speed generator behind `xdpgw blast`, and the
 * bpf_link attach it needs. The cffi cdef of the `_blast` binding (blast_build.py reads it) and #included
 * by blast.c. Python (xdpgw.tools.blast) owns the program fd and the frame template.
 */

/* Run the XDP program `repeat` times over `frame`; returns 0 (retval = its last verdict) or -errno.
 * batch_size 0: the kernel default (64). */
int xgw_blast_run(int prog_fd, uint32_t ifindex, uint32_t queue, const uint8_t *frame, uint32_t len,
                  uint32_t repeat, uint32_t batch_size, uint32_t *retval);
/* Paced runs until `*sent` reaches `until` at `pps` frames per second from t0_ns (see blast.c). */
int xgw_blast_paced(int prog_fd, uint32_t ifindex, uint32_t queue, const uint8_t *frame, uint32_t len,
                    uint32_t batch_size, uint64_t t0_ns, double pps, uint64_t until, uint32_t max_per_call,
                    uint64_t *sent);
/* Attach through a bpf_link (generic mode); returns the link fd or -errno. */
int xgw_xdp_link(int prog_fd, int ifindex);
