/* Small libbpf helpers: identify a loaded program by id, pin/open maps, sum per-CPU counters, BTF offsets. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>

#include "bpfobj.h"

/* Copy the name of program `id` into `name`; returns 0, or -errno (e.g. -ENOENT: gone). */
int xgw_prog_name_by_id(uint32_t id, char *name, size_t namelen)
{
    struct bpf_prog_info info;
    uint32_t len = sizeof(info);
    int fd = bpf_prog_get_fd_by_id(id), err;
    if (fd < 0)
        return -errno;
    memset(&info, 0, sizeof(info));
    err = bpf_obj_get_info_by_fd(fd, &info, &len);
    close(fd);
    if (err)
        return -errno;
    strncpy(name, info.name, namelen - 1);
    name[namelen - 1] = 0;
    return 0;
}

int xgw_obj_pin(int fd, const char *path) { return bpf_obj_pin(fd, path) ? -errno : 0; }

int xgw_obj_get(const char *path)
{
    int fd = bpf_obj_get(path);
    return fd < 0 ? -errno : fd;
}

void xgw_close_fd(int fd) { close(fd); }

/*
 * Sum a per-CPU array map of u64 over all possible CPUs: out[k] = sum of key k, for k < nkeys.
 * `scratch` holds ncpu u64. Returns 0 or -errno.
 */
int xgw_percpu_sum(int map_fd, uint32_t nkeys, uint32_t ncpu, uint64_t *scratch, uint64_t *out)
{
    for (uint32_t k = 0; k < nkeys; k++) {
        uint64_t sum = 0;
        if (bpf_map_lookup_elem(map_fd, &k, scratch))
            return -errno;
        for (uint32_t c = 0; c < ncpu; c++)
            sum += scratch[c];
        out[k] = sum;
    }
    return 0;
}

/* fd of the map called `name` used by program `prog_id` (works without pins); -errno if none. */
int xgw_prog_map_fd(uint32_t prog_id, const char *name)
{
    uint32_t ids[64];
    struct bpf_prog_info info;
    uint32_t len = sizeof(info);
    int pfd = bpf_prog_get_fd_by_id(prog_id);
    if (pfd < 0)
        return -errno;
    memset(&info, 0, sizeof(info));
    info.nr_map_ids = 64;
    info.map_ids = (uint64_t)(unsigned long)ids;
    int err = bpf_obj_get_info_by_fd(pfd, &info, &len);
    close(pfd);
    if (err)
        return -errno;
    for (uint32_t i = 0; i < info.nr_map_ids && i < 64; i++) {
        struct bpf_map_info minfo;
        uint32_t mlen = sizeof(minfo);
        int mfd = bpf_map_get_fd_by_id(ids[i]);
        if (mfd < 0)
            continue;
        memset(&minfo, 0, sizeof(minfo));
        if (!bpf_obj_get_info_by_fd(mfd, &minfo, &mlen) && !strncmp(minfo.name, name, sizeof(minfo.name)))
            return mfd;
        close(mfd);
    }
    return -ENOENT;
}

/* Byte offset of `member` in the kernel's `struct sname` (vmlinux BTF), looking into anonymous
 * struct/union members (e.g. randomized layouts). Returns the offset, or -errno (-ENOENT: no such member,
 * or no kernel BTF). Lets a tracing program read a field without the kernel's own headers. */
static int xgw_btf_find_member(const struct btf *btf, __u32 type_id, const char *member, __u32 base)
{
    const struct btf_type *t = btf__type_by_id(btf, btf__resolve_type(btf, type_id));
    if (!t || !btf_is_composite(t))
        return -ENOENT;
    const struct btf_member *m = btf_members(t);
    for (__u16 i = 0; i < btf_vlen(t); i++, m++) {
        __u32 bit = btf_member_bit_offset(t, i);
        if (m->name_off == 0) { /* anonymous struct/union: search inside */
            int off = xgw_btf_find_member(btf, m->type, member, base + bit / 8);
            if (off >= 0)
                return off;
        } else if (!strcmp(btf__name_by_offset(btf, m->name_off), member)) {
            return bit % 8 ? -EINVAL : (int)(base + bit / 8);
        }
    }
    return -ENOENT;
}

int xgw_btf_member_offset(const char *sname, const char *member)
{
    struct btf *btf = btf__load_vmlinux_btf();
    if (!btf)
        return errno ? -errno : -ENOENT;
    int id = btf__find_by_name_kind(btf, sname, BTF_KIND_STRUCT);
    int off = id < 0 ? -ENOENT : xgw_btf_find_member(btf, (__u32)id, member, 0);
    btf__free(btf);
    return off;
}
