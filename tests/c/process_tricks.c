/*
 * process_tricks.c: a test target that binds from processes made in the ways a
 * program could use to slip out of force-bind's hands, for tests/process_tricks.rs.
 *
 * Usage: process_tricks MODE IP PORT [ARG]
 * Every bind is a TCP socket bound to IP:PORT; each result is printed in bindprobe's
 * format, with the binding process's PID, as one write(2):
 *     bound 4 127.0.0.3:5000 pid=1234
 *     error 1 Operation not permitted (bind) pid=1234
 * Modes:
 *   clone3-fork      syscall(SYS_clone3) with no flags (a fork); the child binds
 *   own-listener     a thread installs a seccomp filter of its own that sends bind to a
 *                    listener (SECCOMP_FILTER_FLAG_NEW_LISTENER), then binds; the
 *                    main thread answers with SECCOMP_USER_NOTIF_FLAG_CONTINUE. The
 *                    kernel runs the filters newest first and keeps the first of the
 *                    strongest action, and USER_NOTIF is stronger than TRACE
 *   clone3-vm        clone3 with CLONE_VM|CLONE_VFORK and a stack of its own (x86_64;
 *                    a fork-like clone3 elsewhere); the child binds with raw syscalls
 *   clone3-untraced  clone3 with CLONE_UNTRACED: a tracer cannot auto-attach the child
 *   clone-untraced   clone(2) (the legacy syscall) with CLONE_UNTRACED
 *   untraced-ptrace  clone with CLONE_UNTRACED, and the program traces that child
 *                    itself (PTRACE_SEIZE with PTRACE_O_TRACESECCOMP) and lets every
 *                    seccomp stop go on unchanged: a filter that returns
 *                    SECCOMP_RET_TRACE defers to whichever tracer is attached
 *   clone3-thread    clone3 through glibc's pthread_create (glibc >= 2.34 uses it)
 *   vfork            vfork(); the child binds before _exit
 *   vfork-exec       vfork(); the child execs this program in mode `plain`
 *   plain            binds in the process itself
 *   whoami           prints `uid R E` (real and effective), then binds (for setuid)
 *   double-fork      the child forks a grandchild and exits at once; the grandchild
 *                    (in a session of its own) waits ARG ms, then binds, after its
 *                    parent is gone; the program itself exits right after its child
 *   wait-then-bind   prints `ready`, waits (at most 10 s) until the file ARG exists,
 *                    then binds once and lingers a second
 *   bind-loop        two threads bind and close sockets in a loop; prints `ready`
 *                    after the first bind; stops by itself after 30 s
 * Modes that need clone3 print `skip clone3: errno 38` and exit 0 where it is missing.
 * Exit status: 0 when the bind(s) ran (whatever they returned), 3 on a setup failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif

static struct sockaddr_storage target;
static socklen_t target_len;

static void die(const char *what)
{
	perror(what);
	exit(3);
}

/* A way around the policy that force-bind refused outright (the ptrace engine
 * refuses CLONE_UNTRACED with EPERM): reported like a failed bind, since no bind
 * could happen. */
static void refused(const char *what)
{
	printf("error %d %s (%s refused)\n", errno, strerror(errno), what);
	exit(0);
}

/* The result of one bind, filled in by raw syscalls only (usable from a vfork or
 * CLONE_VM child that must not touch libc state such as errno or stdio). */
struct result {
	long err;	/* 0 or a positive errno */
	struct sockaddr_storage got;
	pid_t pid;
};

static void bind_raw(struct result *r)
{
	long fd = syscall(SYS_socket, target.ss_family, SOCK_STREAM, 0);
	socklen_t len = sizeof(r->got);

	r->pid = syscall(SYS_getpid);
	if (fd < 0) {
		r->err = errno;
		return;
	}
	if (syscall(SYS_bind, fd, &target, target_len) < 0)
		r->err = errno;
	else if (syscall(SYS_getsockname, fd, &r->got, &len) < 0)
		r->err = errno;
	else
		r->err = 0;
	syscall(SYS_close, fd);
}

static void report(const struct result *r)
{
	char line[256], text[INET6_ADDRSTRLEN] = "?";

	if (r->err) {
		snprintf(line, sizeof(line), "error %ld %s (bind) pid=%d\n", r->err,
			 strerror((int)r->err), r->pid);
	} else if (r->got.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&r->got;
		inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
		snprintf(line, sizeof(line), "bound 4 %s:%d pid=%d\n", text, ntohs(sin->sin_port),
			 r->pid);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&r->got;
		inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
		snprintf(line, sizeof(line), "bound 6 [%s]:%d pid=%d\n", text,
			 ntohs(sin6->sin6_port), r->pid);
	}
	/* One write: lines from several processes never interleave (pipe(7)). */
	if (write(1, line, strlen(line)) < 0)
		_exit(3);
}

static void bind_and_report(void)
{
	struct result r;

	memset(&r, 0, sizeof(r));
	bind_raw(&r);
	report(&r);
}

static void wait_child(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, __WALL) < 0)
		die("waitpid");
}

/* clone3 is Linux 5.3+ (and hidden by tools that emulate older kernels): without it
 * there is nothing to test, which the test is told with a `skip` line. */
static void clone3_missing(void)
{
	printf("skip clone3: errno %d\n", errno);
	exit(0);
}

static long clone3(struct clone_args *args)
{
	long pid = syscall(SYS_clone3, args, sizeof(*args));
	if (pid < 0 && errno == ENOSYS)
		clone3_missing();
	return pid;
}

static int mode_clone3_fork(unsigned long long flags)
{
	struct clone_args args;

	memset(&args, 0, sizeof(args));
	args.flags = flags;
	args.exit_signal = SIGCHLD;
	long pid = clone3(&args);
	if (pid < 0) {
		if (errno == ENOSYS)
			clone3_missing();
		die("clone3");
	}
	if (pid == 0) {
		bind_and_report();
		_exit(0);
	}
	wait_child(pid);
	return 0;
}

static int mode_clone_untraced(void)
{
	/* The raw clone syscall with a fork's semantics: no new stack, so the child
	 * returns here like fork()'s. x86_64 argument order: flags, stack, parent_tid,
	 * child_tid, tls. */
	long pid = syscall(SYS_clone, CLONE_UNTRACED | SIGCHLD, 0, NULL, NULL, 0);
	if (pid < 0 && errno == EPERM)
		refused("clone");
	if (pid < 0)
		die("clone");
	if (pid == 0) {
		bind_and_report();
		_exit(0);
	}
	wait_child(pid);
	return 0;
}

/* The child waits on a pipe until its parent has attached to it. */
static int mode_untraced_ptrace(void)
{
	int go[2], status, seccomp_stops = 0;
	char c;

	if (pipe(go) < 0)
		die("pipe");
	/* The legacy clone, so this runs on kernels without clone3 too. */
	long pid = syscall(SYS_clone, CLONE_UNTRACED | SIGCHLD, 0, NULL, NULL, 0);
	if (pid < 0 && errno == EPERM)
		refused("clone");
	if (pid < 0)
		die("clone");
	if (pid == 0) {
		close(go[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(3);
		bind_and_report();
		_exit(0);
	}
	close(go[0]);
	if (ptrace(PTRACE_SEIZE, pid, NULL, (void *)(long)PTRACE_O_TRACESECCOMP) < 0) {
		/* Not allowed to trace (a tracer of our own, Yama): say so, bind anyway. */
		printf("cannot trace the child: errno %d\n", errno);
		fflush(stdout);
	}
	if (write(go[1], "x", 1) != 1)
		die("write");
	for (int i = 0; i < 1000; i++) {
		if (waitpid(pid, &status, __WALL) < 0)
			die("waitpid");
		if (WIFEXITED(status) || WIFSIGNALED(status))
			break;
		if (WIFSTOPPED(status) && status >> 8 == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8))) {
			seccomp_stops++;
			ptrace(PTRACE_CONT, pid, NULL, NULL);
		} else if (WIFSTOPPED(status)) {
			int sig = WSTOPSIG(status);
			ptrace(PTRACE_CONT, pid, NULL, (void *)(long)(sig == SIGTRAP ? 0 : sig));
		}
	}
	printf("seccomp stops %d\n", seccomp_stops);
	return 0;
}

static volatile int listener_fd = -1;

static void *own_listener_thread(void *arg)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_bind, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(code) / sizeof(code[0]), code};
	char line[64];

	(void)arg;
	/* force-bind set no_new_privs already; set it anyway for a run without it. */
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
			  SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (fd < 0) {
		snprintf(line, sizeof(line), "own listener: errno %d\n", errno);
		if (write(1, line, strlen(line)) < 0)
			_exit(3);
		listener_fd = -2;
	} else {
		listener_fd = fd;
	}
	bind_and_report();
	return NULL;
}

static int mode_own_listener(void)
{
	pthread_t t;
	struct seccomp_notif req;
	struct seccomp_notif_resp resp;

	if (pthread_create(&t, NULL, own_listener_thread, NULL) != 0)
		die("pthread_create");
	for (int i = 0; i < 5000 && listener_fd == -1; i++)
		usleep(1000);
	if (listener_fd >= 0) {
		memset(&req, 0, sizeof(req));
		if (ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_RECV, &req) == 0) {
			memset(&resp, 0, sizeof(resp));
			resp.id = req.id;
			resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
			if (ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0)
				perror("NOTIF_SEND");
			printf("own listener: let syscall %d through\n", req.data.nr);
		}
	}
	pthread_join(t, NULL);
	return 0;
}

static struct result shared_result;

#if defined(__x86_64__)
static int vm_child(void *arg)
{
	bind_raw(arg);
	return 0;
}

/*
 * clone3 with CLONE_VM|CLONE_VFORK and a stack of its own. The child cannot return
 * through libc's syscall() (its return address is on the parent's stack), so the
 * call is made here: the child calls fn(arg) on its new stack and exits with
 * SYS_exit. Only rax, rcx and r11 differ between parent and child after syscall.
 */
static long clone3_vm(struct clone_args *args, int (*fn)(void *), void *arg)
{
	long ret;
	register void *r12 asm("r12") = (void *)fn;
	register void *r13 asm("r13") = arg;

	asm volatile("syscall\n\t"
		     "test %%rax, %%rax\n\t"
		     "jnz 1f\n\t"
		     "mov %%r13, %%rdi\n\t"
		     "call *%%r12\n\t"
		     "mov %%eax, %%edi\n\t"
		     "mov $60, %%eax\n\t" /* SYS_exit */
		     "syscall\n\t"
		     "hlt\n\t"
		     "1:\n\t"
		     : "=a"(ret)
		     : "0"((long)SYS_clone3), "D"(args), "S"(sizeof(*args)), "r"(r12), "r"(r13)
		     : "rcx", "r11", "memory");
	return ret;
}

static int mode_clone3_vm(void)
{
	struct clone_args args;
	size_t size = 256 * 1024;
	void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (stack == MAP_FAILED)
		die("mmap");
	memset(&args, 0, sizeof(args));
	args.flags = CLONE_VM | CLONE_VFORK;
	args.exit_signal = SIGCHLD;
	args.stack = (uintptr_t)stack;
	args.stack_size = size;
	memset(&shared_result, 0, sizeof(shared_result));
	long pid = clone3_vm(&args, vm_child, &shared_result);
	if (pid < 0) {
		errno = -pid;
		if (errno == ENOSYS)
			clone3_missing();
		die("clone3");
	}
	/* CLONE_VFORK: the child has exited by now and left its result in our memory. */
	wait_child(pid);
	report(&shared_result);
	return 0;
}
#else
static int mode_clone3_vm(void)
{
	return mode_clone3_fork(0);
}
#endif

static void *thread_main(void *arg)
{
	(void)arg;
	bind_and_report();
	return NULL;
}

static int mode_thread(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, thread_main, NULL) != 0)
		die("pthread_create");
	pthread_join(t, NULL);
	return 0;
}

static int mode_vfork(void)
{
	memset(&shared_result, 0, sizeof(shared_result));
	pid_t pid = vfork();
	if (pid < 0)
		die("vfork");
	if (pid == 0) {
		/* Raw syscalls only: the child borrows our memory and stack. */
		bind_raw(&shared_result);
		_exit(0);
	}
	wait_child(pid);
	report(&shared_result);
	return 0;
}

static int mode_vfork_exec(char **argv)
{
	char *args[] = {argv[0], "plain", argv[2], argv[3], NULL};
	pid_t pid = vfork();
	if (pid < 0)
		die("vfork");
	if (pid == 0) {
		execv("/proc/self/exe", args);
		_exit(127);
	}
	wait_child(pid);
	return 0;
}

static int mode_whoami(void)
{
	char line[64];

	snprintf(line, sizeof(line), "uid %d %d\n", (int)getuid(), (int)geteuid());
	if (write(1, line, strlen(line)) < 0)
		return 3;
	bind_and_report();
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int mode_double_fork(long delay_ms)
{
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		pid_t grandchild = fork();
		if (grandchild < 0)
			_exit(3);
		if (grandchild == 0) {
			setsid();
			sleep_ms(delay_ms);
			/* The parent is gone by now: we are an orphan in our own session. */
			char line[64];
			snprintf(line, sizeof(line), "orphan ppid=%d\n", (int)getppid());
			if (write(1, line, strlen(line)) < 0)
				_exit(3);
			bind_and_report();
			_exit(0);
		}
		_exit(0);
	}
	wait_child(child);
	printf("parent exits\n");
	fflush(stdout);
	return 0;
}

static int mode_wait_then_bind(const char *flag)
{
	printf("ready\n");
	for (int i = 0; i < 1000 && access(flag, F_OK) < 0; i++)
		sleep_ms(10);
	bind_and_report();
	sleep_ms(1000);
	return 0;
}

static volatile int stop_loop;

static void *loop_main(void *arg)
{
	int *first = arg;
	time_t end = time(NULL) + 30;

	while (!stop_loop && time(NULL) < end) {
		int fd = socket(target.ss_family, SOCK_STREAM, 0);
		if (fd < 0)
			continue;
		if (bind(fd, (struct sockaddr *)&target, target_len) == 0 &&
		    __sync_bool_compare_and_swap(first, 0, 1)) {
			printf("ready\n");
			fflush(stdout);
		}
		close(fd);
	}
	return NULL;
}

static int mode_bind_loop(void)
{
	pthread_t t[2];
	int first = 0;

	for (int i = 0; i < 2; i++)
		if (pthread_create(&t[i], NULL, loop_main, &first) != 0)
			die("pthread_create");
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s MODE IP PORT [ARG]\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	struct sockaddr_in *sin = (struct sockaddr_in *)&target;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&target;
	int port = atoi(argv[3]);

	if (inet_pton(AF_INET, argv[2], &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		target_len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, argv[2], &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		target_len = sizeof(*sin6);
	} else {
		fprintf(stderr, "bad address %s\n", argv[2]);
		return 2;
	}
	setvbuf(stdout, NULL, _IONBF, 0);

	if (strcmp(mode, "plain") == 0) {
		bind_and_report();
		return 0;
	}
	if (strcmp(mode, "clone3-fork") == 0)
		return mode_clone3_fork(0);
	if (strcmp(mode, "clone3-untraced") == 0)
		return mode_clone3_fork(CLONE_UNTRACED);
	if (strcmp(mode, "clone-untraced") == 0)
		return mode_clone_untraced();
	if (strcmp(mode, "own-listener") == 0)
		return mode_own_listener();
	if (strcmp(mode, "untraced-ptrace") == 0)
		return mode_untraced_ptrace();
	if (strcmp(mode, "clone3-vm") == 0)
		return mode_clone3_vm();
	if (strcmp(mode, "clone3-thread") == 0)
		return mode_thread();
	if (strcmp(mode, "vfork") == 0)
		return mode_vfork();
	if (strcmp(mode, "vfork-exec") == 0)
		return mode_vfork_exec(argv);
	if (strcmp(mode, "whoami") == 0)
		return mode_whoami();
	if (strcmp(mode, "double-fork") == 0)
		return mode_double_fork(argc > 4 ? atol(argv[4]) : 300);
	if (strcmp(mode, "wait-then-bind") == 0 && argc > 4)
		return mode_wait_then_bind(argv[4]);
	if (strcmp(mode, "bind-loop") == 0)
		return mode_bind_loop();
	fprintf(stderr, "unknown mode %s\n", mode);
	return 2;
}
