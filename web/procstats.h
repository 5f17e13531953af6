/* procstats.h - the process's own resource figures for /metrics: open descriptors, bytes held by
 * in-flight retrievals and the caps that bound memory, API connections and why they were
 * dropped. Process-wide (every fetcher, every API instance of the process). */
#ifndef FS_PROCSTATS_H
#define FS_PROCSTATS_H

#include "web/wbuf.h"

/* Appends the families (# HELP, # TYPE, samples) to b; common holds the labels every sample
 * carries (vantage="...",shard="..."), as render_metrics builds them. Reads the figures now:
 * called from render_metrics, they are as fresh as the snapshot being rendered. */
void procstats_metrics(wbuf_t *b, const wbuf_t *common);

/* Open descriptors of this process (entries of /proc/self/fd), or -1 when unknown. */
int procstats_open_fds(void);

#endif
