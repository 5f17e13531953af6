/* file.c - reading user-named files without blocking on FIFOs or devices (see file.h). */
#include "probes/file.h"
#include "probes/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *fs_size_text(size_t n, char *buf, size_t len)
{
    if (n >= (1u << 20) && n % (1u << 20) == 0)
        snprintf(buf, len, "%zu MiB", n >> 20);
    else if (n >= 1024 && n % 1024 == 0)
        snprintf(buf, len, "%zu KiB", n >> 10);
    else
        snprintf(buf, len, "%zu bytes", n);
    return buf;
}

/* Why st is not acceptable, or NULL when it is a regular file of at most cap bytes. */
static const char *refuse(const struct stat *st, size_t cap, char *why, size_t whylen)
{
    char size[32];
    const char *kind = S_ISFIFO(st->st_mode)   ? "a FIFO"
                       : S_ISCHR(st->st_mode)  ? "a character device"
                       : S_ISBLK(st->st_mode)  ? "a block device"
                       : S_ISSOCK(st->st_mode) ? "a socket"
                                               : "not a file";
    if (S_ISDIR(st->st_mode))
        snprintf(why, whylen, "is a directory");
    else if (!S_ISREG(st->st_mode))
        snprintf(why, whylen, "is not a regular file (%s)", kind);
    else if ((uint64_t)st->st_size > cap)
        snprintf(why, whylen, "larger than %s", fs_size_text(cap, size, sizeof(size)));
    else
        return NULL;
    return why;
}

int fs_read_file(const char *path, size_t cap, char **buf, size_t *len, struct stat *st_out,
                 char *why, size_t whylen)
{
    int rc = -1, fd = -1;
    char *b = NULL, size[32];
    size_t got = 0;
    struct stat st;
    *buf = NULL;
    *len = 0;
    /* stat first: a device is never opened (opening one can have effects of its own) ... */
    if (stat(path, &st) != 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        goto out;
    }
    if (refuse(&st, cap, why, whylen) != NULL)
        goto out;
    /* ... and O_NONBLOCK + fstat catch a swap to a FIFO in between: opening one would block
     * until a writer appears, reading it until the writer writes. */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        goto out;
    }
    if (refuse(&st, cap, why, whylen) != NULL)
        goto out;
    b = fs_xmalloc((size_t)st.st_size + 1);
    size_t room = (size_t)st.st_size;
    for (;;) { /* the file may grow while we read: never past cap */
        if (got == room) {
            if (room >= cap) {
                char c;
                ssize_t r = read(fd, &c, 1);
                if (r > 0) {
                    snprintf(why, whylen, "larger than %s", fs_size_text(cap, size, sizeof(size)));
                    goto out;
                }
                break;
            }
            room = room * 2 + 4096 < cap ? room * 2 + 4096 : cap;
            b = fs_xrealloc(b, room + 1);
        }
        ssize_t r = read(fd, b + got, room - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, whylen, "%s", strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    b[got] = '\0';
    *buf = b;
    *len = got;
    b = NULL;
    if (st_out != NULL)
        *st_out = st;
    rc = 0;
out:
    free(b);
    if (fd >= 0)
        close(fd);
    return rc;
}
