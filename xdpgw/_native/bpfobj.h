/* Small libbpf helpers (bpfobj.c): identify a loaded program by id, pin/open objects, sum per-CPU
 * counters, BTF offsets. The cffi cdef of the `_bpfobj` binding (bpfobj_build.py reads it, together with
 * the XDP program's ABI header xdpgw/kernel/programs/xdpgw_rx.h) and #included by bpfobj.c. Every fd
 * returned belongs to the Python caller (xdpgw.kernel), which closes it with xgw_close_fd.
 */

/* Copy the name of program `id` into `name`; returns 0, or -errno (e.g. -ENOENT: gone). */
int xgw_prog_name_by_id(uint32_t id, char *name, size_t namelen);
int xgw_obj_pin(int fd, const char *path);
int xgw_obj_get(const char *path);
void xgw_close_fd(int fd);
/* Sum a per-CPU array map of u64 over all possible CPUs: out[k] = sum of key k, for k < nkeys.
 * `scratch` holds ncpu u64. Returns 0 or -errno. */
int xgw_percpu_sum(int map_fd, uint32_t nkeys, uint32_t ncpu, uint64_t *scratch, uint64_t *out);
/* fd of the map called `name` used by program `prog_id` (works without pins); -errno if none. */
int xgw_prog_map_fd(uint32_t prog_id, const char *name);
/* Byte offset of `member` in the kernel's `struct sname` (vmlinux BTF), or -errno. */
int xgw_btf_member_offset(const char *sname, const char *member);
