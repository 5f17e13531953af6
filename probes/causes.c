/* causes.c - catalogue tables generated from the X-macro lists in causes.h. */
#include "probes/causes.h"

#include <string.h>

static const fs_cause_info_t cause_table[] = {{"none", "", "", "The endpoint is online.", ""},
#define X(e, id, ph, sym, desc, rem) {id, ph, sym, desc, rem},
                                              FS_CAUSE_LIST(X)
#undef X
};
_Static_assert(sizeof(cause_table) / sizeof(cause_table[0]) == FS_CAUSE_COUNT,
               "cause table out of sync");

static const fs_cause_info_t warning_table[] = {
#define X(e, id, ph, sym, desc, rem) {id, ph, sym, desc, rem},
    FS_WARNING_LIST(X)
#undef X
};
_Static_assert(sizeof(warning_table) / sizeof(warning_table[0]) == FS_WARN_COUNT,
               "warning table out of sync");
_Static_assert(FS_WARN_COUNT <= 32, "warnings are a 32-bit mask");

const fs_cause_info_t *fs_cause_info(fs_cause_t c)
{
    if ((unsigned)c >= FS_CAUSE_COUNT)
        c = FS_CAUSE_NONE;
    return &cause_table[c];
}

const fs_cause_info_t *fs_warning_info(fs_warning_t w)
{
    if ((unsigned)w >= FS_WARN_COUNT)
        w = 0;
    return &warning_table[w];
}

const char *fs_cause_id(fs_cause_t c)
{
    return fs_cause_info(c)->id;
}

const char *fs_warning_id(fs_warning_t w)
{
    return fs_warning_info(w)->id;
}

int fs_cause_from_id(const char *id)
{
    for (int i = 0; i < FS_CAUSE_COUNT; i++)
        if (strcmp(cause_table[i].id, id) == 0)
            return i;
    return -1;
}

int fs_warning_from_id(const char *id)
{
    for (int i = 0; i < FS_WARN_COUNT; i++)
        if (strcmp(warning_table[i].id, id) == 0)
            return i;
    return -1;
}
