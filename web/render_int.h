/* render_int.h - what the files of web/render*.c share: the phase names and the warnings array.
 * Internal to web/; the public interface is web/render.h. */
#ifndef FS_RENDER_INT_H
#define FS_RENDER_INT_H

#include <stdint.h>

#include "web/snapshot.h"
#include "web/wbuf.h"

/* "dns", "connect", "tls", "revocation", "request": SNAP_PH_* in order. */
extern const char *const render__phase_names[SNAP_PH_COUNT];

/* A warning mask as the JSON array of its identifiers. */
void render__put_warnings(wbuf_t *b, uint32_t mask);

#endif
