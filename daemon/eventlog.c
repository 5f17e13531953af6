/* eventlog.c - the optional event file in agent.log's own record format: whole lines written
 * with write(2), so a full disk drops (and counts) lines instead of gluing fragments. */
#include "daemon/fleet_int.h"
#include "probes/util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Appends the record at rec + 1 (len bytes, one line; rec[0] is reserved for a leading
 * newline) with write(2) on the O_APPEND descriptor, so a failed or short write (a full disk)
 * is seen: the line is dropped and counted, and what part of it reached the file is taken
 * back, so every record stays one whole line and the next never glues onto a fragment. */
static void event_log_append(fleet_t *f, char *rec, size_t len)
{
    const char *p = rec + 1;
    size_t n = len, done = 0;
    int err = 0;
    if (f->event_partial) { /* a fragment could not be taken back: start a fresh line */
        rec[0] = '\n';
        p = rec;
        n++;
    }
    while (done < n) {
        ssize_t w = write(f->event_fd, p + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err = w < 0 ? errno : EIO;
            break;
        }
        done += (size_t)w;
    }
    if (done == n) {
        f->event_partial = 0;
        if (f->event_failing)
            fleet__log(f, "event_log: writing again (%llu lines dropped since start)",
                       (unsigned long long)f->event_dropped);
        f->event_failing = 0;
        return;
    }
    f->event_dropped++;
    fs_strlcpy(f->event_error, strerror(err), sizeof(f->event_error));
    f->event_error_at = fs_wall_ms() / 1000;
    if (!f->event_failing)
        fleet__log(f,
                   "event_log: cannot write \"%s\": %s; lines are dropped and counted "
                   "(event_log.dropped_lines in /api/v1/status) until it can",
                   fleet_cfg(f)->event_log, f->event_error);
    f->event_failing = 1;
    if (done > 0) {
        /* Only when the file still ends where this write did: nobody appended since. */
        struct stat st;
        off_t end = lseek(f->event_fd, 0, SEEK_CUR);
        if (end < (off_t)done || fstat(f->event_fd, &st) != 0 || st.st_size != end ||
            ftruncate(f->event_fd, end - (off_t)done) != 0)
            f->event_partial = 1;
    }
}

void fleet__event_log_line(fleet_t *f, const snap_event_t *ev, const char *message)
{
    if (f->event_fd < 0)
        return;
    /* agent.log's own record format, so existing log tooling can read these lines. */
    time_t t = (time_t)ev->at;
    struct tm tm;
    gmtime_r(&t, &tm);
    char date[64];
    strftime(date, sizeof(date), "%m/%d/%Y %H:%M:%S.000 +00:00", &tm);
    int severity = ev->new_state == SNAP_OFFLINE ? 1 : 4; /* 1 error, 4 information */
    /* Messages carry peer-controlled text (status lines, certificate names, URLs): escape it
     * so every record stays one well-formed line. */
    char text[1024];
    size_t k = 0;
    for (const char *p = message; *p && k + 7 < sizeof(text); p++) {
        const char *rep = *p == '&'    ? "&amp;"
                          : *p == '<'  ? "&lt;"
                          : *p == '>'  ? "&gt;"
                          : *p == '\'' ? "&apos;"
                                       : NULL;
        if (rep != NULL) {
            memcpy(text + k, rep, strlen(rep));
            k += strlen(rep);
        } else {
            text[k++] = (unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p;
        }
    }
    text[k] = '\0';
    char rec[1700]; /* rec[0]: room for a leading newline; the text and subject are bounded */
    int n = snprintf(rec + 1, sizeof(rec) - 1,
                     "<event date='%s' severity='%d' hostName='%s' source='fleetscan' "
                     "module='fleetscan' process='fleetscan' pid='%d' thread='0' tickCount='%llu' "
                     ">%s -&gt; %s: %s</event>\n",
                     date, severity, ev->subject, (int)getpid(), (unsigned long long)ev->seq,
                     snap_state_name(ev->old_state), snap_state_name(ev->new_state), text);
    assert(n > 0 && (size_t)n < sizeof(rec) - 1);
    event_log_append(f, rec, (size_t)n);
}

/* Opens cfg's event log for appending into *fd (-1 when none is configured); *partial tells
 * whether the file ends inside a line (a record cut short earlier), so the next one starts on
 * a fresh line. O_NONBLOCK: a FIFO swapped in for the file fails instead of blocking the loop. */
int fleet__open_event_log(const cfg_t *cfg, int *fd, int *partial, char err[256])
{
    struct stat st;
    *fd = -1;
    *partial = 0;
    if (cfg->event_log == NULL)
        return 0;
    int d = open(cfg->event_log, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
                 0640);
    if (d < 0 || fstat(d, &st) != 0) {
        snprintf(err, 256, "event_log: cannot open \"%s\" for appending: %s", cfg->event_log,
                 strerror(errno));
        if (d >= 0)
            close(d);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, 256, "event_log: \"%s\" is not a regular file", cfg->event_log);
        close(d);
        return -1;
    }
    int r =
        st.st_size > 0 ? open(cfg->event_log, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC) : -1;
    char last = '\n';
    if (r >= 0 && pread(r, &last, 1, st.st_size - 1) == 1 && last != '\n')
        *partial = 1;
    if (r >= 0)
        close(r);
    *fd = d;
    return 0;
}

void fleet__event_log_note(fleet_t *f, const char *subject, const char *message)
{
    snap_event_t ev = {
        .at = fs_wall_ms() / 1000, .old_state = SNAP_ONLINE, .new_state = SNAP_ONLINE};
    fs_strlcpy(ev.subject, subject, sizeof(ev.subject));
    fleet__event_log_line(f, &ev, message);
}
