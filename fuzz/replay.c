/* replay.c - a plain main() for the fuzz targets, so they run without clang and libFuzzer: every
 * input of the corpus directories (or files) given, then, for -t MS milliseconds, mutations of
 * them (bit flips, interesting bytes, erased, inserted and duplicated ranges, splices) from a
 * fixed seed. Built with the ASan+UBSan build as fuzz_<name>_replay; `ctest -R fuzz_smoke` runs
 * each over its committed corpus for a few seconds (fuzz/README.md).
 *
 *   fuzz_crl_replay [-t MS] [-s SEED] PATH...        exit 0, or the sanitizer's report */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#define REPLAY_MAX_LEN 16384 /* as fuzz/run.sh's -max_len */

typedef struct input_s {
    unsigned char *p;
    size_t n;
} input_t;

static input_t *inputs;
static size_t ninputs, cap;
static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void add_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    unsigned char *p = malloc(REPLAY_MAX_LEN);
    size_t n = fread(p, 1, REPLAY_MAX_LEN, f);
    fclose(f);
    if (ninputs == cap) {
        cap = cap ? cap * 2 : 64;
        inputs = realloc(inputs, cap * sizeof(*inputs));
    }
    inputs[ninputs++] = (input_t){p, n};
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory's regular files in name order (the runs are reproducible), or the file itself. */
static void add_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        add_file(path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        names = realloc(names, (n + 1) * sizeof(*names));
        names[n] = malloc(strlen(path) + strlen(e->d_name) + 2);
        sprintf(names[n++], "%s/%s", path, e->d_name);
    }
    if (d != NULL)
        closedir(d);
    qsort(names, n, sizeof(*names), by_name);
    for (size_t i = 0; i < n; i++) {
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
            add_file(names[i]);
        free(names[i]);
    }
    free(names);
}

/* One to four mutations of a copy of a corpus input into buf; returns the length. */
static size_t mutate(unsigned char *buf)
{
    static const unsigned char interesting[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '\n', '%',
                                                '/',  '?',  '&',  '=',  '-',  '0',  '9'};
    const input_t *in = &inputs[rng() % ninputs];
    size_t n = in->n;
    memcpy(buf, in->p, n);
    for (int k = 1 + (int)(rng() % 4); k > 0; k--) {
        size_t at = n ? rng() % n : 0, len = 1 + rng() % 16;
        switch (rng() % 6) {
        case 0: /* flip a bit */
            if (n)
                buf[at] ^= (unsigned char)(1u << (rng() % 8));
            break;
        case 1: /* an interesting byte */
            if (n)
                buf[at] = interesting[rng() % sizeof(interesting)];
            break;
        case 2: /* erase a range */
            if (len > n - at)
                len = n - at;
            memmove(buf + at, buf + at + len, n - at - len);
            n -= len;
            break;
        case 3: /* insert random bytes */
            if (n + len <= REPLAY_MAX_LEN) {
                memmove(buf + at + len, buf + at, n - at);
                for (size_t i = 0; i < len; i++)
                    buf[at + i] = (unsigned char)rng();
                n += len;
            }
            break;
        case 4: /* duplicate a range */
            if (n && n + len <= REPLAY_MAX_LEN && at + len <= n) {
                memmove(buf + at + len, buf + at, n - at);
                n += len;
            }
            break;
        default: { /* splice: the head of this one, the tail of another */
            const input_t *o = &inputs[rng() % ninputs];
            size_t from = o->n ? rng() % o->n : 0;
            if (at + (o->n - from) <= REPLAY_MAX_LEN) {
                memcpy(buf + at, o->p + from, o->n - from);
                n = at + (o->n - from);
            }
            break;
        }
        }
    }
    return n;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    long budget_ms = 0;
    rng_state = 0x9e3779b97f4a7c15ull;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            budget_ms = atol(argv[++i]);
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            rng_state = strtoull(argv[++i], NULL, 0) | 1;
        else {
            fprintf(stderr, "usage: %s [-t MS] [-s SEED] PATH...\n", argv[0]);
            return 2;
        }
    }
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    for (; i < argc; i++)
        add_path(argv[i]);
    if (ninputs == 0) {
        fprintf(stderr, "%s: no inputs\n", argv[0]);
        return 2;
    }
    for (size_t k = 0; k < ninputs; k++)
        LLVMFuzzerTestOneInput(inputs[k].p, inputs[k].n);
    unsigned long mutations = 0;
    unsigned char *buf = malloc(REPLAY_MAX_LEN);
    long end = now_ms() + budget_ms;
    while (budget_ms > 0 && now_ms() < end) {
        size_t n = mutate(buf);
        unsigned char *copy = malloc(n ? n : 1); /* exact size: ASan sees reads past the end */
        memcpy(copy, buf, n);
        LLVMFuzzerTestOneInput(copy, n);
        free(copy);
        mutations++;
    }
    fprintf(stderr, "%s: %zu corpus inputs and %lu mutations, no finding\n", argv[0], ninputs,
            mutations);
    free(buf);
    for (size_t k = 0; k < ninputs; k++)
        free(inputs[k].p);
    free(inputs);
    return 0;
}
