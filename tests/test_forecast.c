/* test_forecast.c - daemon/forecast.c on hand-made snapshots: certificate and CRL edges apart,
 * time-dependent causes re-evaluated at the instant, groups offline now reported as such. */
#include "daemon/forecast.h"
#include "probes/util.h"
#include "tests/test.h"

#include <cjson/cJSON.h>

#define DAY 86400

static cJSON *forecast(const snap_t *s, int days, int64_t now)
{
    char *out = forecast_json(s, days, now);
    cJSON *j = cJSON_Parse(out);
    free(out);
    ASSERT(j != NULL);
    return j;
}

static double at(cJSON *o, const char *a, const char *b)
{
    cJSON *x = cJSON_GetObjectItem(cJSON_GetObjectItem(o, a), b);
    return x ? x->valuedouble : 0;
}

static cJSON *grp(cJSON *doc, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "groups"), i);
}

int main(void)
{
    const int64_t now = 1800000000;
    snap_t *s = snap_new();
    s->ngroups = 3;
    s->groups = fs_xcalloc(3, sizeof(*s->groups));
    /* 0: online, strict, a weekly CRL and a certificate that expires in a year */
    snap_group_t *g = &s->groups[0];
    g->name = fs_xstrdup("weekly-crl");
    g->counts.total = g->counts.online = 10;
    g->rev_strict = 1;
    g->crl_next_update = now + 7 * DAY;
    g->chain_not_after = now + 365 * DAY;
    g->chain_not_before = now - 30 * DAY;
    /* 1: a clock 3 days behind, the new certificate valid from 1 day ago (its clock: 4 days
     * before notBefore): offline now, recovers in 4 days */
    g = &s->groups[1];
    g->name = fs_xstrdup("clock-behind");
    g->counts.total = g->counts.offline = 5;
    g->counts.causes[FS_CAUSE_CERT_NOT_YET_VALID] = 5;
    g->clock_skew_s = -3 * DAY;
    g->chain_not_before = now + DAY - 3 * DAY + 3 * DAY; /* notBefore = now + 1 day */
    g->chain_not_after = now + 200 * DAY;
    /* 2: offline now (a closed port) */
    g = &s->groups[2];
    g->name = fs_xstrdup("closed");
    g->counts.total = g->counts.offline = 7;
    g->counts.causes[FS_CAUSE_CONNECT_REFUSED] = 7;
    g->chain_not_after = now + 100 * DAY;

    cJSON *f = forecast(s, 30, now);
    /* a CRL republished on time does not hide the certificate: still online in 30 days */
    ASSERT_EQ(at(grp(f, 0), "endpoints", "online"), 10);
    ASSERT_STREQ(cJSON_GetObjectItem(grp(f, 0), "offline_cause")->valuestring, "cert_expired");
    char ts[32];
    ASSERT_STREQ(cJSON_GetObjectItem(grp(f, 0), "offline_from")->valuestring,
                 fs_rfc3339(now + 365 * DAY, ts, sizeof(ts)));
    ASSERT_STREQ(cJSON_GetObjectItem(grp(f, 0), "crl_offline_from")->valuestring,
                 fs_rfc3339(now + 7 * DAY, ts, sizeof(ts)));
    ASSERT_EQ(at(cJSON_GetObjectItem(grp(f, 0), "if_crl_not_republished"), "causes", "crl_expired"),
              10);
    /* the clock that is behind recovers once notBefore passes at its clock (now + 4 days) */
    ASSERT_EQ(at(grp(f, 1), "endpoints", "online"), 5);
    ASSERT_EQ(at(grp(f, 1), "causes", "cert_not_yet_valid"), 0);
    /* offline now: reported as offline now, not with a future date */
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(grp(f, 2), "offline_now")));
    ASSERT_STREQ(cJSON_GetObjectItem(grp(f, 2), "offline_from")->valuestring,
                 fs_rfc3339(now, ts, sizeof(ts)));
    ASSERT_STREQ(cJSON_GetObjectItem(grp(f, 2), "offline_cause")->valuestring, "connect_refused");
    ASSERT_EQ(at(f, "endpoints", "online"), 15);
    cJSON_Delete(f);

    f = forecast(s, 3, now); /* before the clock-behind group's edge: still not yet valid */
    ASSERT_EQ(at(grp(f, 1), "causes", "cert_not_yet_valid"), 5);
    cJSON_Delete(f);
    f = forecast(s, 0, now); /* days=0 is the present picture */
    ASSERT_EQ(at(f, "endpoints", "online"), 10);
    ASSERT_EQ(at(f, "endpoints", "offline"), 12);
    cJSON_Delete(f);
    f = forecast(s, 366, now); /* the certificate edge */
    ASSERT_EQ(at(grp(f, 0), "causes", "cert_expired"), 10);
    ASSERT_EQ(at(grp(f, 1), "causes", "cert_expired"), 5);
    cJSON_Delete(f);
    snap_unref(s);
    return 0;
}
