/* Counts malloc-family calls per thread, for what ONNX Runtime (and anything else) allocates
 * inside the JACK callback. LD_PRELOAD it into the daemon; at exit it writes one line per
 * thread that allocated: name, tid, mallocs, frees. The daemon names its JACK process thread
 * "autotuned-rt" (in the thread-init callback), so that line is the callback's.
 *
 *   make malloc-count      (builds target/malloc_count.so and runs the measurement)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SLOTS 256

struct slot {
    _Atomic long tid;
    _Atomic unsigned long mallocs;
    _Atomic unsigned long frees;
    char name[16];
};

static struct slot slots[SLOTS];
static __thread struct slot *mine;
static __thread unsigned long since_name_check;

static void *(*real_malloc)(size_t);
static void (*real_free)(void *);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void *(*real_memalign)(size_t, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);

/* dlsym itself may calloc before the real functions are known: serve it from a small arena. */
static char bootstrap[4096];
static size_t bootstrap_used;

static void *bootstrap_alloc(size_t size) {
    size = (size + 15) & ~(size_t)15;
    if (bootstrap_used + size > sizeof bootstrap) return NULL;
    void *p = bootstrap + bootstrap_used;
    bootstrap_used += size;
    return p;
}

static int from_bootstrap(void *p) {
    return (char *)p >= bootstrap && (char *)p < bootstrap + sizeof bootstrap;
}

static void resolve(void) {
    if (real_malloc) return;
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_free = dlsym(RTLD_NEXT, "free");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_memalign = dlsym(RTLD_NEXT, "memalign");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
}

static struct slot *slot_of_thread(void) {
    if (!mine) {
        long tid = syscall(SYS_gettid);
        for (int i = 0; i < SLOTS; i++) {
            long expected = 0;
            if (atomic_compare_exchange_strong(&slots[i].tid, &expected, tid)) {
                mine = &slots[i];
                break;
            }
        }
        if (!mine) mine = &slots[SLOTS - 1];
    }
    /* Threads are often named after their first allocations: look again now and then. */
    if (since_name_check++ % 256 == 0) prctl(PR_GET_NAME, mine->name, 0, 0, 0);
    return mine;
}

static void count_malloc(void) { atomic_fetch_add_explicit(&slot_of_thread()->mallocs, 1, memory_order_relaxed); }
static void count_free(void) { atomic_fetch_add_explicit(&slot_of_thread()->frees, 1, memory_order_relaxed); }

void *malloc(size_t size) {
    if (!real_malloc) { resolve(); if (!real_malloc) return bootstrap_alloc(size); }
    count_malloc();
    return real_malloc(size);
}

void *calloc(size_t n, size_t size) {
    if (!real_calloc) return bootstrap_alloc(n * size); /* zeroed: static storage */
    count_malloc();
    return real_calloc(n, size);
}

void *realloc(void *p, size_t size) {
    resolve();
    count_malloc();
    if (from_bootstrap(p)) {
        size_t available = (size_t)(bootstrap + sizeof bootstrap - (char *)p);
        void *q = real_malloc(size);
        if (q) memcpy(q, p, size < available ? size : available);
        return q;
    }
    return real_realloc(p, size);
}

void free(void *p) {
    if (!p || from_bootstrap(p)) return;
    resolve();
    count_free();
    real_free(p);
}

void *memalign(size_t align, size_t size) { resolve(); count_malloc(); return real_memalign(align, size); }
void *aligned_alloc(size_t align, size_t size) { resolve(); count_malloc(); return real_aligned_alloc(align, size); }
int posix_memalign(void **out, size_t align, size_t size) {
    resolve();
    count_malloc();
    return real_posix_memalign(out, align, size);
}

__attribute__((destructor)) static void report(void) {
    const char *path = getenv("MALLOC_COUNT_OUT");
    FILE *out = path ? fopen(path, "w") : stderr;
    if (!out) return;
    for (int i = 0; i < SLOTS; i++) {
        long tid = atomic_load(&slots[i].tid);
        if (!tid) continue;
        fprintf(out, "%s %ld %lu %lu\n", slots[i].name[0] ? slots[i].name : "?", tid,
                atomic_load(&slots[i].mallocs), atomic_load(&slots[i].frees));
    }
    if (path) fclose(out);
}
