/* forecast.h - SPEC §4 forecast: the fleet's picture N days ahead, assuming nothing is renewed
 * or republished, computed from a snapshot (what each group's endpoints depend on). */
#ifndef FS_FORECAST_H
#define FS_FORECAST_H

#include <stdint.h>

#include "web/snapshot.h"

/* Returns a malloc'd JSON document (NULL when out of memory): days, at, endpoints, causes (as in
 * /api/v1/status) and per group the counts plus offline_from (when its online endpoints would go
 * offline, and why). */
char *forecast_json(const snap_t *s, int days, int64_t now);

#endif
