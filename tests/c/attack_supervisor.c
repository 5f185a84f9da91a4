/* Found in review: a way around the policy that force-bind must close (tests/attacks.rs). */
// The program turns on its supervisor: run as the same unprivileged uid as force-bind,
// it finds its nearest ancestor whose command name is NAME (default force-bind) and
// tries, in turn, to read its memory (process_vm_readv, /proc/PID/mem), to copy its
// descriptors 0..64 (pidfd_open + pidfd_getfd: a copy of the seccomp listener or of a
// socket lets the program answer or bind for itself), and to trace it (PTRACE_ATTACH,
// PTRACE_SEIZE; detached again at once). One line per attempt:
//   supervisor PID uid UID
//   process_vm_readv: ok | errno E
//   proc_mem: ok | open errno E | read errno E
//   pidfd_open: ok | errno E
//   pidfd_getfd: got N eperm N ebadf N other N [first E] [fd N=TARGET ...]
//   ptrace_attach: ok | errno E
//   ptrace_seize: ok | errno E
//   done
// "ok" (and, for process_vm_readv and /proc/PID/mem reads, EFAULT or EIO; for
// pidfd_getfd, EBADF) means the kernel let this process at the supervisor.
//
// usage: attack_supervisor [NAME]
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

/* ppid and comm of PID from /proc/PID/stat; 0 when gone. */
static int parent_of(int pid, char *comm, size_t size)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *open_paren = strchr(buf, '('), *close_paren = strrchr(buf, ')');
	if (!open_paren || !close_paren)
		return 0;
	snprintf(comm, size, "%.*s", (int)(close_paren - open_paren - 1), open_paren + 1);
	int ppid = 0;
	sscanf(close_paren + 2, "%*c %d", &ppid);
	return ppid;
}

static int uid_of(int pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	int uid = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "Uid: %d", &uid) == 1)
			break;
	if (f)
		fclose(f);
	return uid;
}

/* The start of the supervisor's first mapping, when its maps can be read; else an
 * address that is most likely unmapped there (the access check comes first, so
 * EFAULT still says the kernel let us in). */
static unsigned long some_address(int pid)
{
	char path[64];
	unsigned long start = 0x10000;
	snprintf(path, sizeof path, "/proc/%d/maps", pid);
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%lx-", &start) != 1)
			start = 0x10000;
		fclose(f);
	}
	return start;
}

/* Waits (at most 2 s) for traced `pid` to stop, then detaches without a signal. */
static void detach(int pid)
{
	int status;
	for (int i = 0; i < 200; i++) {
		int r = waitpid(pid, &status, __WALL | WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			break;
		struct timespec t = { 0, 10 * 1000 * 1000 };
		nanosleep(&t, 0);
	}
	if (ptrace(PTRACE_DETACH, pid, 0, 0) != 0)
		kill(pid, SIGCONT);
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "force-bind";
	alarm(30);
	/* While the supervisor is stopped by our attach, a signal to us would stop us
	 * for a tracer (the ptrace engine) that cannot answer: keep them pending. */
	sigset_t all;
	sigfillset(&all);
	sigdelset(&all, SIGALRM);
	sigprocmask(SIG_BLOCK, &all, 0);

	int sup = 0;
	char comm[64];
	for (int pid = getppid(), hops = 0; pid > 1 && hops < 16; hops++) {
		int ppid = parent_of(pid, comm, sizeof comm);
		if (strcmp(comm, name) == 0) {
			sup = pid;
			break;
		}
		pid = ppid;
	}
	if (!sup) {
		printf("no supervisor named %s among the ancestors\n", name);
		return 3;
	}
	printf("supervisor %d uid %d\n", sup, uid_of(sup));

	char buf[64];
	struct iovec local = { buf, sizeof buf }, remote = { (void *)some_address(sup), sizeof buf };
	if (process_vm_readv(sup, &local, 1, &remote, 1, 0) >= 0)
		printf("process_vm_readv: ok\n");
	else
		printf("process_vm_readv: errno %d\n", errno);

	char path[64];
	snprintf(path, sizeof path, "/proc/%d/mem", sup);
	int mem = open(path, O_RDONLY);
	if (mem < 0)
		printf("proc_mem: open errno %d\n", errno);
	else if (pread(mem, buf, sizeof buf, (off_t)some_address(sup)) >= 0)
		printf("proc_mem: ok\n");
	else
		printf("proc_mem: read errno %d\n", errno);
	if (mem >= 0)
		close(mem);

	int pidfd = syscall(SYS_pidfd_open, sup, 0);
	if (pidfd < 0) {
		printf("pidfd_open: errno %d\n", errno);
	} else {
		printf("pidfd_open: ok\n");
		int got = 0, eperm = 0, ebadf = 0, other = 0, first = 0;
		char stolen[2048] = "";
		for (int fd = 0; fd <= 64; fd++) {
			int copy = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
			if (copy >= 0) {
				char link[64], target[128] = "?";
				snprintf(link, sizeof link, "/proc/self/fd/%d", copy);
				ssize_t n = readlink(link, target, sizeof target - 1);
				target[n > 0 ? n : 1] = 0;
				size_t used = strlen(stolen);
				snprintf(stolen + used, sizeof stolen - used, " fd %d=%s", fd, target);
				close(copy);
				got++;
				continue;
			}
			if (!first)
				first = errno;
			if (errno == EPERM)
				eperm++;
			else if (errno == EBADF)
				ebadf++;
			else
				other++;
		}
		printf("pidfd_getfd: got %d eperm %d ebadf %d other %d first %d%s\n", got, eperm,
		       ebadf, other, first, stolen);
		close(pidfd);
	}

	if (ptrace(PTRACE_ATTACH, sup, 0, 0) == 0) {
		printf("ptrace_attach: ok\n");
		fflush(stdout);
		detach(sup);
	} else {
		printf("ptrace_attach: errno %d\n", errno);
	}
	if (ptrace(PTRACE_SEIZE, sup, 0, 0) == 0) {
		printf("ptrace_seize: ok\n");
		fflush(stdout);
		if (ptrace(PTRACE_INTERRUPT, sup, 0, 0) == 0)
			detach(sup);
	} else {
		printf("ptrace_seize: errno %d\n", errno);
	}
	printf("done\n");
	return 0;
}
