/* dashboard.h - the dashboard page served at GET /: web/dashboard.html, embedded in the binary
 * at build time, and the Content-Security-Policy that lets exactly its inline code run. */
#ifndef FS_DASHBOARD_H
#define FS_DASHBOARD_H

#include <stddef.h>

/* The page (UTF-8 HTML, NUL-terminated). Static storage, never freed; *len gets its length
 * without the NUL. */
const char *dashboard_page(size_t *len);

/* The value of the Content-Security-Policy header to send with the page: nothing but the page's
 * own inline <style> and <script> (admitted by their SHA-256 hashes) and fetch() to the same
 * origin. Static storage, computed on the first call; safe to call from any thread. */
const char *dashboard_csp(void);

#endif
