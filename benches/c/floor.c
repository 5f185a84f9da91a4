/* floor.c: the least any supervisor of each kind can cost on this machine (issue 15).
 * benches/overhead.rs builds it (statically) and runs it side by side with force-bind,
 * in place of force-bind, around the same bench_target:
 *
 *   floor start PROG [ARG...]
 *       vfork; the child installs a small seccomp filter with a listener (bind, listen
 *       and io_uring_setup to SECCOMP_RET_USER_NOTIF) and execs PROG; the parent
 *       waits. What any seccomp wrapper must do to start a program.
 *   floor notify continue|full WORKERS PROG [ARG...]
 *       The same filter (fork, the listener passed back over SCM_RIGHTS), with
 *       SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (6.6+) and WORKERS threads all in
 *       NOTIF_RECV. "continue": each notification is answered with
 *       SECCOMP_USER_NOTIF_FLAG_CONTINUE at once (the kernel's round trip and nothing
 *       else; the program's bind is not rewritten). "full": what a race-free
 *       supervisor must do per bind and no more: pidfd_getfd of the socket (pidfds
 *       kept per thread), one process_vm_readv of the sockaddr, NOTIF_ID_VALID, an
 *       IPv4 address rewritten to 127.0.0.2, bind on the copy, close, NOTIF_SEND of
 *       the result.
 *   floor ptrace block|spin PROG [ARG...]
 *       A tracer: the filter sends bind to SECCOMP_RET_TRACE, the tracer answers each
 *       seccomp stop with PTRACE_CONT and nothing else (forks and clones followed).
 *       "spin" polls waitpid(WNOHANG) with sched_yield for up to 50 us before
 *       blocking, as force-bind's tracer does.
 *
 * Exit status: the program's (128+N when it was killed by signal N); 1 with a message
 * on stderr when a call fails; 2 for bad arguments. Every loop ends with the program.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <elf.h>
#include <time.h>
#include <unistd.h>

/* Newer than the build host's headers (Linux 6.6 and 6.9). */
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

#define MAX_WORKERS 256
#define PIDFD_SLOTS 4096
#define SPIN_NS 50000

static void die(const char *what) {
    fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int exit_code(int status) {
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

/* x86_64 only (the bench's machine): anything else is allowed, as a floor needs. */
static void install_filter(int ret, int listener, int *fd_out) {
    struct sock_filter insns[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_bind, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_listen, listener ? 2 : 0, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_setup, listener ? 1 : 0, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, (unsigned)ret),
    };
    struct sock_fprog prog = {.len = sizeof insns / sizeof insns[0], .filter = insns};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        _exit(126);
    long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                      listener ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0, &prog);
    if (fd < 0)
        _exit(126);
    if (fd_out)
        *fd_out = (int)fd;
}

/* ---- start ---------------------------------------------------------------- */

static int mode_start(char **argv) {
    pid_t pid = vfork();
    if (pid < 0)
        die("vfork");
    if (pid == 0) {
        int fd;
        install_filter(SECCOMP_RET_USER_NOTIF, 1, &fd);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0)
        die("waitpid");
    return exit_code(status);
}

/* ---- notify --------------------------------------------------------------- */

static int listener = -1;
static int full;

struct pidfd_cache {
    pid_t tid[PIDFD_SLOTS];
    int fd[PIDFD_SLOTS];
};

/* A pidfd of thread `tid`, kept per worker (no lock); `fresh` drops a stale one. */
static int pidfd_of(struct pidfd_cache *c, pid_t tid, int fresh) {
    unsigned slot = (unsigned)tid % PIDFD_SLOTS;
    if (c->tid[slot] == tid && c->fd[slot] >= 0 && !fresh)
        return c->fd[slot];
    if (c->fd[slot] >= 0)
        close(c->fd[slot]);
    c->tid[slot] = tid;
    c->fd[slot] = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
    return c->fd[slot];
}

/* The race-free answer to one trapped bind; -errno on any failure (fail closed). */
static long answer_full(struct pidfd_cache *c, const struct seccomp_notif *req) {
    int fd = -1;
    for (int fresh = 0; fresh < 2 && fd < 0; fresh++) {
        int pidfd = pidfd_of(c, (pid_t)req->pid, fresh);
        if (pidfd < 0)
            return -EPERM;
        fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)req->data.args[0], 0);
        if (fd < 0 && errno != ESRCH)
            return -errno;
    }
    if (fd < 0)
        return -EPERM;
    struct sockaddr_storage addr;
    size_t len = req->data.args[2] > sizeof addr ? sizeof addr : req->data.args[2];
    struct iovec local = {.iov_base = &addr, .iov_len = len};
    struct iovec remote = {.iov_base = (void *)req->data.args[1], .iov_len = len};
    long ret;
    if (process_vm_readv((pid_t)req->pid, &local, 1, &remote, 1, 0) != (ssize_t)len) {
        ret = -EFAULT;
    } else if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id) != 0) {
        ret = -EPERM;
    } else {
        if (addr.ss_family == AF_INET && len >= sizeof(struct sockaddr_in))
            ((struct sockaddr_in *)&addr)->sin_addr.s_addr = htonl(0x7f000002);
        ret = bind(fd, (struct sockaddr *)&addr, (socklen_t)len) == 0 ? 0 : -errno;
    }
    close(fd);
    return ret;
}

static void *notify_worker(void *arg) {
    (void)arg;
    struct pidfd_cache *c = full ? malloc(sizeof *c) : NULL;
    if (full) {
        if (!c)
            die("malloc");
        memset(c->tid, 0, sizeof c->tid);
        memset(c->fd, 0xff, sizeof c->fd);
    }
    for (;;) {
        struct seccomp_notif req;
        struct seccomp_notif_resp resp;
        memset(&req, 0, sizeof req);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) {
            if (errno == EINTR || errno == ENOENT)
                continue;
            die("NOTIF_RECV");
        }
        memset(&resp, 0, sizeof resp);
        resp.id = req.id;
        if (full && req.data.nr == SYS_bind) {
            long r = answer_full(c, &req);
            resp.val = 0;
            resp.error = (int)r;
        } else {
            resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        }
        /* ENOENT: the caller was interrupted or died meanwhile. */
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) != 0 && errno != ENOENT)
            die("NOTIF_SEND");
    }
    return NULL;
}

static int recv_fd(int sock) {
    char byte;
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
        return -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (!cm || cm->cmsg_type != SCM_RIGHTS)
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    return fd;
}

static void send_fd(int sock, int fd) {
    char byte = 0;
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    if (sendmsg(sock, &msg, 0) != 1)
        _exit(126);
}

static int mode_notify(const char *how, const char *workers_arg, char **argv) {
    full = strcmp(how, "full") == 0;
    int workers = atoi(workers_arg);
    if ((!full && strcmp(how, "continue") != 0) || workers < 1 || workers > MAX_WORKERS) {
        fprintf(stderr, "floor: notify continue|full WORKERS(1-%d) PROG...\n", MAX_WORKERS);
        return 2;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        die("socketpair");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        int fd;
        close(sv[0]);
        install_filter(SECCOMP_RET_USER_NOTIF, 1, &fd);
        send_fd(sv[1], fd);
        close(fd);
        execv(argv[0], argv);
        _exit(127);
    }
    close(sv[1]);
    listener = recv_fd(sv[0]);
    if (listener < 0)
        die("the listener from the child");
    close(sv[0]);
    /* 6.6+: the woken program runs on the supervisor's CPU, as force-bind asks. */
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0) != 0)
        die("NOTIF_SET_FLAGS SYNC_WAKE_UP");
    for (int i = 0; i < workers; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, notify_worker, NULL) != 0)
            die("pthread_create");
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            die("waitpid");
    /* The workers are still in NOTIF_RECV: _exit ends them with the process. */
    fflush(stdout);
    _exit(exit_code(status));
}

/* ---- ptrace --------------------------------------------------------------- */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* What a race-free tracer must do at a seccomp stop for bind, and no more: read the
 * registers, take the tracee's socket (pidfd_getfd; the pidfd kept per thread),
 * read the sockaddr, bind the copy (the IPv4 address rewritten), close it, and
 * skip the call with its result in the return register. x86_64 and aarch64 only;
 * 0 when the stop was answered, else the tracee is let through untouched. */
static int answer_ptrace_full(struct pidfd_cache *c, pid_t tid) {
#if defined(__x86_64__)
    struct user_regs_struct regs;
    struct iovec io = {.iov_base = &regs, .iov_len = sizeof regs};
    if (ptrace(PTRACE_GETREGSET, tid, NT_PRSTATUS, &io) != 0)
        return -1;
    unsigned long long *nr = &regs.orig_rax, *ret = &regs.rax;
    unsigned long long a0 = regs.rdi, a1 = regs.rsi, a2 = regs.rdx;
#elif defined(__aarch64__)
    struct user_regs_struct regs;
    struct iovec io = {.iov_base = &regs, .iov_len = sizeof regs};
    if (ptrace(PTRACE_GETREGSET, tid, NT_PRSTATUS, &io) != 0)
        return -1;
    unsigned long long *ret = &regs.regs[0];
    unsigned long long a0 = regs.regs[0], a1 = regs.regs[1], a2 = regs.regs[2];
#else
    (void)c;
    (void)tid;
    return -1;
#endif
#if defined(__x86_64__) || defined(__aarch64__)
    /* A kept pidfd of a thread that is gone (its tid reused): a fresh one, once. */
    int fd = -1;
    for (int fresh = 0; fresh < 2 && fd < 0; fresh++) {
        int pidfd = pidfd_of(c, tid, fresh);
        if (pidfd < 0)
            break;
        fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)a0, 0);
        if (fd < 0 && errno != ESRCH)
            break;
    }
    long result;
    if (fd < 0) {
        result = -EBADF;
    } else {
        struct sockaddr_storage addr;
        size_t len = a2 > sizeof addr ? sizeof addr : a2;
        struct iovec local = {.iov_base = &addr, .iov_len = len};
        struct iovec remote = {.iov_base = (void *)a1, .iov_len = len};
        if (process_vm_readv(tid, &local, 1, &remote, 1, 0) != (ssize_t)len) {
            result = -EFAULT;
        } else {
            if (addr.ss_family == AF_INET && len >= sizeof(struct sockaddr_in))
                ((struct sockaddr_in *)&addr)->sin_addr.s_addr = htonl(0x7f000002);
            result = bind(fd, (struct sockaddr *)&addr, (socklen_t)len) == 0 ? 0 : -errno;
        }
        close(fd);
    }
#if defined(__x86_64__)
    *nr = (unsigned long long)-1;
#else
    /* aarch64: the syscall number is a separate regset (NT_ARM_SYSTEM_CALL). */
    int skip = -1;
    struct iovec sysno = {.iov_base = &skip, .iov_len = sizeof skip};
    if (ptrace(PTRACE_SETREGSET, tid, NT_ARM_SYSTEM_CALL, &sysno) != 0)
        return -1;
#endif
    *ret = (unsigned long long)result;
    return ptrace(PTRACE_SETREGSET, tid, NT_PRSTATUS, &io) == 0 ? 0 : -1;
#endif
}

static int mode_ptrace(const char *how, char **argv) {
    int full = strcmp(how, "full") == 0;
    int spin = full || strcmp(how, "spin") == 0;
    if (!spin && strcmp(how, "block") != 0) {
        fprintf(stderr, "floor: ptrace block|spin|full PROG...\n");
        return 2;
    }
    static struct pidfd_cache cache;
    for (int i = 0; i < PIDFD_SLOTS; i++)
        cache.fd[i] = -1;
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0)
            _exit(126);
        raise(SIGSTOP);
        install_filter(SECCOMP_RET_TRACE, 0, NULL);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFSTOPPED(status))
        die("the child's first stop");
    long opts = PTRACE_O_TRACESECCOMP | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
                PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL;
    if (ptrace(PTRACE_SETOPTIONS, pid, 0, opts) != 0)
        die("PTRACE_SETOPTIONS");
    if (ptrace(PTRACE_CONT, pid, 0, 0) != 0)
        die("PTRACE_CONT");
    for (;;) {
        pid_t got = 0;
        if (spin) {
            uint64_t until = now_ns() + SPIN_NS;
            while ((got = waitpid(-1, &status, __WALL | WNOHANG)) == 0 && now_ns() < until)
                sched_yield();
        }
        if (got == 0)
            got = waitpid(-1, &status, __WALL);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            die("waitpid");
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (got == pid)
                return exit_code(status);
            continue;
        }
        if (!WIFSTOPPED(status))
            continue;
        int sig = WSTOPSIG(status);
        /* A stop it could not answer would measure a cheaper path: fatal. */
        if (full && (status >> 8) == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8)) &&
            answer_ptrace_full(&cache, got) != 0)
            die("the race-free answer (registers)");
        /* Event stops (seccomp, fork, clone) and new tracees' first SIGSTOP carry
         * no signal to deliver; any other stop is a signal for the tracee. */
        if ((status >> 16) != 0 || sig == SIGSTOP || sig == SIGTRAP)
            sig = 0;
        if (ptrace(PTRACE_CONT, got, 0, sig) != 0 && errno != ESRCH)
            die("PTRACE_CONT");
    }
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "start") == 0)
        return mode_start(argv + 2);
    if (argc >= 5 && strcmp(argv[1], "notify") == 0)
        return mode_notify(argv[2], argv[3], argv + 4);
    if (argc >= 4 && strcmp(argv[1], "ptrace") == 0)
        return mode_ptrace(argv[2], argv + 3);
    fprintf(stderr, "usage: floor start PROG... | notify continue|full WORKERS PROG... | "
                    "ptrace block|spin|full PROG...\n");
    return 2;
}
