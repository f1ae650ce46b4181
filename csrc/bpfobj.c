/* Small libbpf helpers: identify a loaded BPF program by id (for status/detach from any process). */
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>

/* Copy the name of program `id` into `name`; returns 0, or -errno (e.g. -ENOENT: gone). */
int xgw_prog_name_by_id(uint32_t id, char *name, size_t namelen)
{
    struct bpf_prog_info info;
    uint32_t len = sizeof(info);
    int fd = bpf_prog_get_fd_by_id(id), err;
    if (fd < 0)
        return fd;
    memset(&info, 0, sizeof(info));
    err = bpf_obj_get_info_by_fd(fd, &info, &len);
    close(fd);
    if (err)
        return err;
    strncpy(name, info.name, namelen - 1);
    name[namelen - 1] = 0;
    return 0;
}
