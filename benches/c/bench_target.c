/* bench_target.c: the program benches/overhead.rs runs natively and under force-bind.
 *
 * It times its own loops (CLOCK_MONOTONIC), so process start-up is not in the bind
 * and getppid figures, and prints one line of key=value pairs on stdout:
 *
 *   bind N          N x socket+bind(127.0.0.1:0)+close, one thread
 *                   -> ns=TOTAL addr=IP   (IP: what the kernel bound the first time)
 *   getppid N       N x syscall(SYS_getppid)
 *                   -> ns=TOTAL
 *   conc P T N      P processes x T threads, each N x socket+bind+close, all started
 *                   at once (a process-shared barrier); each bind() call is timed
 *                   -> binds=P*T*N ns=WALL p50=NS p99=NS max=NS addr=IP
 *   hold N1 N2      N1 binds, prints "phase1", waits for a line on stdin, N2 more binds,
 *                   prints "phase2", waits for a line, exits (the bench reads the
 *                   supervisor's /proc entries at both pauses)
 *
 * Every loop is bounded by its count (and the counts by MAX_*); every wait on stdin by
 * a timeout. Exit status 0, or 1 with a message on stderr when a call fails.
 * Binds only to loopback.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_COUNT 100000000L
#define MAX_PROCS 64
#define MAX_THREADS 64
#define MAX_CONC_BINDS 2000000L
#define STDIN_TIMEOUT_MS 120000

static void die(const char *what) {
    fprintf(stderr, "bench_target: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long count_arg(const char *s, long max) {
    char *end;
    long n = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || n < 0 || n > max) {
        fprintf(stderr, "bench_target: bad count %s\n", s);
        exit(2);
    }
    return n;
}

/* socket+bind(127.0.0.1:0)+close; the first time (addr != NULL) also reports the
 * address the kernel bound, so the bench can check force-bind's rule took effect.
 * With lat != NULL, the bind() call alone is timed. */
static void one_bind(char *addr, size_t addr_len, uint32_t *lat) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        die("socket");
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    uint64_t t0 = lat ? now_ns() : 0;
    if (bind(s, (struct sockaddr *)&sin, sizeof sin) != 0)
        die("bind");
    if (lat) {
        uint64_t d = now_ns() - t0;
        *lat = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
    }
    if (addr) {
        struct sockaddr_in got;
        socklen_t len = sizeof got;
        if (getsockname(s, (struct sockaddr *)&got, &len) != 0)
            die("getsockname");
        inet_ntop(AF_INET, &got.sin_addr, addr, addr_len);
    }
    close(s);
}

static int mode_bind(long n) {
    char addr[INET_ADDRSTRLEN] = "none";
    if (n > 0)
        one_bind(addr, sizeof addr, NULL); /* warm-up, and the address check */
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        one_bind(NULL, 0, NULL);
    uint64_t t = now_ns() - t0;
    printf("ns=%llu addr=%s\n", (unsigned long long)t, addr);
    return 0;
}

static int mode_getppid(long n) {
    syscall(SYS_getppid);
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    uint64_t t = now_ns() - t0;
    printf("ns=%llu\n", (unsigned long long)t);
    return 0;
}

/* Shared between the processes of `conc` (MAP_SHARED, before fork). */
struct shared {
    pthread_barrier_t barrier;
    char addr[INET_ADDRSTRLEN];
    uint64_t start[MAX_PROCS * MAX_THREADS];
    uint64_t end[MAX_PROCS * MAX_THREADS];
    uint32_t lat[]; /* P*T*N bind latencies, ns */
};

struct worker {
    struct shared *sh;
    long slot; /* process * T + thread */
    long n;
};

static void *conc_worker(void *arg) {
    struct worker *w = arg;
    struct shared *sh = w->sh;
    uint32_t *lat = sh->lat + w->slot * w->n;
    int rc = pthread_barrier_wait(&sh->barrier);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) {
        errno = rc;
        die("pthread_barrier_wait");
    }
    sh->start[w->slot] = now_ns();
    for (long i = 0; i < w->n; i++)
        one_bind(w->slot == 0 && i == 0 ? sh->addr : NULL, sizeof sh->addr, &lat[i]);
    sh->end[w->slot] = now_ns();
    return NULL;
}

static void conc_process(struct shared *sh, long p, long t, long n) {
    pthread_t threads[MAX_THREADS];
    struct worker workers[MAX_THREADS];
    for (long i = 0; i < t; i++) {
        workers[i] = (struct worker){.sh = sh, .slot = p * t + i, .n = n};
        int rc = pthread_create(&threads[i], NULL, conc_worker, &workers[i]);
        if (rc != 0) {
            errno = rc;
            die("pthread_create");
        }
    }
    for (long i = 0; i < t; i++)
        pthread_join(threads[i], NULL);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int mode_conc(long procs, long threads, long n) {
    if (procs < 1 || procs > MAX_PROCS || threads < 1 || threads > MAX_THREADS ||
        procs * threads * n > MAX_CONC_BINDS) {
        fprintf(stderr, "bench_target: conc: too many\n");
        return 2;
    }
    long total = procs * threads * n;
    size_t size = sizeof(struct shared) + (size_t)total * sizeof(uint32_t);
    struct shared *sh =
        mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        die("mmap");
    strcpy(sh->addr, "none");
    pthread_barrierattr_t attr;
    pthread_barrierattr_init(&attr);
    pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (pthread_barrier_init(&sh->barrier, &attr, (unsigned)(procs * threads)) != 0)
        die("pthread_barrier_init");
    fflush(stdout);
    pid_t pids[MAX_PROCS];
    for (long p = 0; p < procs; p++) {
        pids[p] = fork();
        if (pids[p] < 0)
            die("fork");
        if (pids[p] == 0) {
            conc_process(sh, p, threads, n);
            _exit(0);
        }
    }
    int failed = 0;
    for (long p = 0; p < procs; p++) {
        int status;
        if (waitpid(pids[p], &status, 0) < 0)
            die("waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed = 1;
    }
    if (failed) {
        fprintf(stderr, "bench_target: conc: a worker process failed\n");
        return 1;
    }
    uint64_t first = UINT64_MAX, last = 0;
    for (long i = 0; i < procs * threads; i++) {
        if (sh->start[i] < first)
            first = sh->start[i];
        if (sh->end[i] > last)
            last = sh->end[i];
    }
    qsort(sh->lat, (size_t)total, sizeof(uint32_t), cmp_u32);
    uint32_t p50 = total ? sh->lat[total / 2] : 0;
    uint32_t p99 = total ? sh->lat[(total * 99) / 100] : 0;
    uint32_t max = total ? sh->lat[total - 1] : 0;
    printf("binds=%ld ns=%llu p50=%u p99=%u max=%u addr=%s\n", total,
           (unsigned long long)(last - first), p50, p99, max, sh->addr);
    return 0;
}

/* Waits (bounded) for one line on stdin; EOF or timeout ends the program. */
static void wait_line(void) {
    struct pollfd pfd = {.fd = 0, .events = POLLIN};
    int rc = poll(&pfd, 1, STDIN_TIMEOUT_MS);
    if (rc <= 0) {
        fprintf(stderr, "bench_target: hold: no go-ahead on stdin\n");
        exit(1);
    }
    char buf[64];
    if (read(0, buf, sizeof buf) <= 0)
        exit(1);
}

static int mode_hold(long n1, long n2) {
    char addr[INET_ADDRSTRLEN] = "none";
    if (n1 > 0)
        one_bind(addr, sizeof addr, NULL);
    for (long i = 1; i < n1; i++)
        one_bind(NULL, 0, NULL);
    printf("phase1 addr=%s\n", addr);
    fflush(stdout);
    wait_line();
    for (long i = 0; i < n2; i++)
        one_bind(NULL, 0, NULL);
    printf("phase2\n");
    fflush(stdout);
    wait_line();
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "bind") == 0)
        return mode_bind(count_arg(argv[2], MAX_COUNT));
    if (argc == 3 && strcmp(argv[1], "getppid") == 0)
        return mode_getppid(count_arg(argv[2], MAX_COUNT));
    if (argc == 5 && strcmp(argv[1], "conc") == 0)
        return mode_conc(count_arg(argv[2], MAX_PROCS), count_arg(argv[3], MAX_THREADS),
                         count_arg(argv[4], MAX_CONC_BINDS));
    if (argc == 4 && strcmp(argv[1], "hold") == 0)
        return mode_hold(count_arg(argv[2], MAX_COUNT), count_arg(argv[3], MAX_COUNT));
    fprintf(stderr, "usage: bench_target bind N | getppid N | conc P T N | hold N1 N2\n");
    return 2;
}
