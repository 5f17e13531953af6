/* test_backend.c - probes/backend.c: when the addresses behind one target disagree (different
 * leaf certificates, different outcomes) and when they do not (agreement, stale records, a
 * record without a certificate); the backend_inconsistent entry of the catalogue. */
#include "probes/backend.h"
#include "tests/test.h"

#define A "E65E4153DF2C4EE69AAD2AFFB2FA0EA64FA4A55A"
#define B "2B81665C47BBAD74467969AA9E3987D1DAAB24C4"

static const int64_t now = 1700000000;

static void test_agreement(void)
{
    char why[256] = "";
    backend_record_t r[] = {
        {"10.0.0.5", A, 1, FS_CAUSE_NONE, now - 10},
        {"10.0.0.6", A, 1, FS_CAUSE_NONE, now - 50},
        {"10.0.0.7", "e65e4153df2c4ee69aad2affb2fa0ea64fa4a55a", 1, FS_CAUSE_NONE, now},
    };
    ASSERT_EQ(backend_inconsistent(r, 3, now, 120, why), 0);
    ASSERT_EQ(backend_inconsistent(r, 1, now, 120, why), 0);
    ASSERT_EQ(backend_inconsistent(r, 0, now, 120, NULL), 0);
    /* All offline for the same reason: consistent (the target is down, not one node). */
    backend_record_t down[] = {
        {"10.0.0.5", NULL, 0, FS_CAUSE_CONNECT_REFUSED, now},
        {"10.0.0.6", "", 0, FS_CAUSE_CONNECT_REFUSED, now},
    };
    ASSERT_EQ(backend_inconsistent(down, 2, now, 120, why), 0);
    /* The same expired certificate everywhere: one cause, consistent. */
    backend_record_t expired[] = {
        {"10.0.0.5", A, 0, FS_CAUSE_CERT_EXPIRED, now},
        {"10.0.0.6", A, 0, FS_CAUSE_CERT_EXPIRED, now},
    };
    ASSERT_EQ(backend_inconsistent(expired, 2, now, 120, why), 0);
    ASSERT_STREQ(why, "");
}

static void test_different_leaves(void)
{
    char why[256];
    /* One node still has the old binding; both online (the old certificate is still valid). */
    backend_record_t r[] = {
        {"10.0.0.5", A, 1, FS_CAUSE_NONE, now},
        {"10.0.0.6", B, 1, FS_CAUSE_NONE, now},
    };
    ASSERT_EQ(backend_inconsistent(r, 2, now, 120, why), 1);
    ASSERT_STREQ(why, "10.0.0.6 presents leaf " B "; 10.0.0.5 presents leaf " A);
    ASSERT_EQ(backend_inconsistent(r, 2, now, 120, NULL), 1);
    /* A node not seen for longer than max_age does not count. */
    r[1].last_seen = now - 600;
    ASSERT_EQ(backend_inconsistent(r, 2, now, 120, why), 0);
    ASSERT_EQ(backend_inconsistent(r, 2, now, 0, why), 1); /* no age limit */
    r[1].last_seen = 0;                                    /* never reached */
    ASSERT_EQ(backend_inconsistent(r, 2, now, 0, why), 0);
}

static void test_different_outcomes(void)
{
    char why[256];
    /* Same certificate, one node refuses: the endpoints that reach it go offline. */
    backend_record_t r[] = {
        {"10.0.0.5", A, 1, FS_CAUSE_NONE, now},
        {"10.0.0.6", NULL, 0, FS_CAUSE_CONNECT_REFUSED, now},
    };
    ASSERT_EQ(backend_inconsistent(r, 2, now, 120, why), 1);
    ASSERT_STREQ(why, "10.0.0.5 is online; 10.0.0.6 is offline (connect_refused)");
    /* Both offline, for different reasons. */
    backend_record_t d[] = {
        {"10.0.0.5", A, 0, FS_CAUSE_MISSING_INTERMEDIATE, now},
        {"10.0.0.6", A, 0, FS_CAUSE_CERT_REVOKED, now - 30},
        {"10.0.0.7", A, 0, FS_CAUSE_MISSING_INTERMEDIATE, now},
    };
    ASSERT_EQ(backend_inconsistent(d, 3, now, 120, why), 1);
    ASSERT_STREQ(why, "10.0.0.5 is offline (missing_intermediate); 10.0.0.6 is offline "
                      "(cert_revoked)");
    d[1].cause = FS_CAUSE_MISSING_INTERMEDIATE;
    ASSERT_EQ(backend_inconsistent(d, 3, now, 120, why), 0);
}

static void test_catalogue(void)
{
    int w = fs_warning_from_id("backend_inconsistent");
    ASSERT(w >= 0);
    ASSERT_EQ(w, FS_WARN_BACKEND_INCONSISTENT);
    const fs_cause_info_t *ci = fs_warning_info(FS_WARN_BACKEND_INCONSISTENT);
    ASSERT_CONTAINS(ci->description, "old binding");
    ASSERT_CONTAINS(ci->remediation, "every node");
    ASSERT_CONTAINS(ci->remediation, "load balancer");
    /* Appended: the bits of the warnings before it are unchanged (stored masks stay valid). */
    ASSERT_EQ(fs_warning_from_id("revocation_url_dead"), FS_WARN_BACKEND_INCONSISTENT - 1);
}

int main(void)
{
    RUN(test_agreement);
    RUN(test_different_leaves);
    RUN(test_different_outcomes);
    RUN(test_catalogue);
    return 0;
}
