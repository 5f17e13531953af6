/* malloc_count.c - an LD_PRELOAD that counts heap allocations and names who makes them, for the
 * bench's allocation figures (bench/run.sh section "alloc"). Every malloc/calloc/realloc/
 * aligned allocation and free is counted; each allocation's call stack is reduced to the
 * nearest frame in the main executable (the fleetscan function that caused it, however deep in
 * OpenSSL or libuv the allocation itself happens) and to the nearest frame outside the
 * allocators. SIGUSR2 writes the counts since the previous SIGUSR2 to the file named by
 * MALLOC_COUNT_OUT (default /tmp/malloc_count.txt) and resets them, so two signals around a
 * window give the allocations of that window (MALLOC_COUNT_SITES=0: counts only, no stacks,
 * which keeps a paced client at its rate):
 *   LD_PRELOAD=build-bench/libmalloc_count.so fleetscan run -c ...; kill -USR2 PID; ...
 * Build: cc -O2 -shared -fPIC -o libmalloc_count.so bench/malloc_count.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SITES 4096
#define DEPTH 24

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);

static atomic_ulong n_alloc, n_free, n_bytes;
static _Thread_local int busy; /* no counting inside our own bookkeeping (backtrace allocates) */

typedef struct {
    atomic_uintptr_t key;
    atomic_ulong n;
} site_t;
static site_t ours[SITES], near[SITES]; /* by nearest main-executable frame / non-allocator frame */
static uintptr_t exe_lo, exe_hi;
static int sites = 1;

/* A bootstrap arena for dlsym's own allocations before the real functions are known. */
static char boot[8192];
static size_t boot_used;

static void resolve(void)
{
    busy = 1;
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_free = dlsym(RTLD_NEXT, "free");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    busy = 0;
}

static void site_add(site_t *t, uintptr_t key)
{
    size_t h = (size_t)(key * 0x9E3779B97F4A7C15ull >> 52) % SITES;
    for (size_t i = 0; i < SITES; i++, h = (h + 1) % SITES) {
        uintptr_t k = atomic_load(&t[h].key);
        if (k == 0 && atomic_compare_exchange_strong(&t[h].key, &k, key))
            k = key;
        if (k == key) {
            atomic_fetch_add(&t[h].n, 1);
            return;
        }
    }
}

/* Frames inside the allocators themselves, skipped when naming the caller. */
static int allocator_frame(void *pc)
{
    Dl_info di;
    if (!dladdr(pc, &di) || di.dli_sname == NULL)
        return 0;
    const char *s = di.dli_sname;
    return strstr(s, "malloc") || strstr(s, "calloc") || strstr(s, "realloc") ||
           strstr(s, "zalloc") || strcmp(s, "CRYPTO_strdup") == 0 ||
           strcmp(s, "CRYPTO_memdup") == 0 || strcmp(s, "CRYPTO_strndup") == 0 ||
           strcmp(s, "count") == 0;
}

static void count(size_t size)
{
    atomic_fetch_add(&n_alloc, 1);
    atomic_fetch_add(&n_bytes, size);
    if (busy || exe_hi == 0 || !sites)
        return;
    busy = 1;
    void *pcs[DEPTH];
    int n = backtrace(pcs, DEPTH);
    uintptr_t mine = 1, nearest = 1; /* 1: none found */
    for (int i = 1; i < n; i++) {
        uintptr_t pc = (uintptr_t)pcs[i];
        if (nearest == 1 && !allocator_frame(pcs[i]))
            nearest = pc;
        if (pc >= exe_lo && pc < exe_hi) {
            mine = pc;
            break;
        }
    }
    site_add(ours, mine);
    site_add(near, nearest);
    busy = 0;
}

static const char *name_of(uintptr_t pc, char *buf, size_t n)
{
    Dl_info di;
    if (pc == 1)
        return "(no frame there)";
    if (pc >= exe_lo && pc < exe_hi) { /* static functions have no dynamic symbol: addr2line */
        snprintf(buf, n, "exe+%#lx", (unsigned long)(pc - exe_lo));
        return buf;
    }
    if (dladdr((void *)pc, &di) && di.dli_sname != NULL)
        snprintf(buf, n, "%s (%s)", di.dli_sname,
                 di.dli_fname
                     ? strrchr(di.dli_fname, '/') ? strrchr(di.dli_fname, '/') + 1 : di.dli_fname
                     : "?");
    else
        snprintf(buf, n, "%#lx (%s)", (unsigned long)pc,
                 di.dli_fname && strrchr(di.dli_fname, '/') ? strrchr(di.dli_fname, '/') + 1 : "?");
    return buf;
}

/* Sums the counts per function name (several return addresses in one function). */
static void dump_table(FILE *f, site_t *t, const char *title)
{
    static struct {
        char name[160];
        unsigned long n;
    } agg[SITES];
    size_t na = 0;
    for (size_t i = 0; i < SITES; i++) {
        uintptr_t k = atomic_load(&t[i].key);
        unsigned long c = atomic_exchange(&t[i].n, 0);
        if (k == 0 || c == 0)
            continue;
        char nm[160];
        name_of(k, nm, sizeof(nm));
        size_t j = 0;
        while (j < na && strcmp(agg[j].name, nm) != 0)
            j++;
        if (j == na) {
            if (na == SITES)
                continue;
            snprintf(agg[na].name, sizeof(agg[na].name), "%s", nm);
            agg[na++].n = 0;
        }
        agg[j].n += c;
    }
    fprintf(f, "%s\n", title);
    for (;;) { /* descending, selection: the table is small */
        size_t best = na;
        for (size_t j = 0; j < na; j++)
            if (agg[j].n > 0 && (best == na || agg[j].n > agg[best].n))
                best = j;
        if (best == na)
            break;
        fprintf(f, "%10lu  %s\n", agg[best].n, agg[best].name);
        agg[best].n = 0;
    }
}

static void on_usr2(int sig)
{
    (void)sig;
    busy = 1; /* not async-signal-safe, and fine for a bench tool stopped between windows */
    const char *out = getenv("MALLOC_COUNT_OUT");
    FILE *f = fopen(out ? out : "/tmp/malloc_count.txt", "w");
    if (f != NULL) {
        fprintf(f, "allocations %lu frees %lu bytes %lu\n", atomic_exchange(&n_alloc, 0),
                atomic_exchange(&n_free, 0), atomic_exchange(&n_bytes, 0));
        dump_table(f, ours, "by the nearest frame in the executable:");
        dump_table(f, near, "by the nearest frame outside the allocators:");
        fclose(f);
    }
    busy = 0;
}

__attribute__((constructor)) static void init(void)
{
    resolve();
    busy = 1;
    /* the executable's mappings, from /proc/self/maps */
    char exe[256] = "";
    ssize_t el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[el > 0 ? el : 0] = '\0';
    FILE *m = fopen("/proc/self/maps", "r");
    char line[512], path[256];
    unsigned long lo, hi;
    while (m != NULL && fgets(line, sizeof(line), m)) {
        path[0] = '\0';
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %255s", &lo, &hi, path) >= 2 &&
            strcmp(path, exe) == 0) {
            if (exe_lo == 0 || lo < exe_lo)
                exe_lo = lo;
            if (hi > exe_hi)
                exe_hi = hi;
        }
    }
    if (m != NULL)
        fclose(m);
    const char *sv = getenv("MALLOC_COUNT_SITES");
    sites = sv == NULL || strcmp(sv, "0") != 0;
    signal(SIGUSR2, on_usr2);
    void *warm[2];
    backtrace(warm, 2); /* loads libgcc_s now, not inside the first counted malloc */
    busy = 0;
}

void *malloc(size_t n)
{
    if (real_malloc == NULL) {
        if (boot_used + n > sizeof(boot))
            return NULL;
        void *p = boot + boot_used;
        boot_used += (n + 15) & ~(size_t)15;
        return p;
    }
    count(n);
    return real_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    if (real_calloc == NULL) {
        void *p = malloc(a * b); /* the bootstrap arena is zeroed */
        return p;
    }
    count(a * b);
    return real_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    if (real_realloc == NULL)
        return NULL;
    count(n);
    return real_realloc(p, n);
}

void free(void *p)
{
    if ((char *)p >= boot && (char *)p < boot + sizeof(boot))
        return;
    if (p != NULL)
        atomic_fetch_add(&n_free, 1);
    if (real_free != NULL)
        real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    count(n);
    return real_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    count(n);
    return real_aligned_alloc(align, n);
}
