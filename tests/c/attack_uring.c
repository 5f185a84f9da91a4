/* Found in review: a way around the policy that force-bind must close (tests/attacks.rs). */
// An io_uring ring inherited from the program's launcher. Refusing io_uring_setup()
// does not help when the ring already exists: IORING_OP_BIND (Linux 6.11+) never
// passes through seccomp, and with IORING_SETUP_SQPOLL the kernel's poll thread runs
// what the program writes into the shared ring without any syscall at all.
//
//   attack_uring launch exec|fork enter|sqpoll -- PROGRAM ARGS...
//     creates a ring (with SQPOLL for sqpoll), clears its close-on-exec flag and runs
//     PROGRAM with each @RINGFD@ in ARGS replaced by the ring's descriptor and each
//     @RINGINFO@ by what is needed to map it. exec: in place of this process (so the
//     ring is the only thing left of it); fork: in a child, this process keeping the
//     ring's poll thread alive (an SQPOLL thread belongs to its creator and resolves
//     descriptors and addresses in the creator) and exiting with the child's status.
//
//   attack_uring child enter|sqpoll RINGFD RINGINFO PORT
//     enter: socket() here, IORING_OP_BIND of it to 0.0.0.0:PORT through
//     io_uring_enter(), then a plain listen(). sqpoll: IORING_OP_SOCKET, IORING_OP_BIND
//     to 0.0.0.0:PORT and IORING_OP_LISTEN, all by writing to the mapped ring (the
//     socket lives in the launcher's descriptor table).
//     Prints, in order: `ring fd errno E` (the inherited descriptor is not open) or
//     `ring fd ok TARGET`; `register ok|errno E` (IORING_REGISTER_PROBE); `enter
//     ok|errno E` (io_uring_enter with nothing to submit); `mmap ok|errno E`; then
//     `uring OP res R` per request and, for enter, `listen ok local ADDR|error E`;
//     `ready`; and holds everything until stdin closes (at most 30 s).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Newer than this system's <linux/io_uring.h> perhaps (include/uapi/linux/io_uring.h). */
#define OP_SOCKET 45
#define OP_BIND 56
#define OP_LISTEN 57
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#define SYS_io_uring_enter 426
#define SYS_io_uring_register 427
#endif

#define ENTRIES 8
/* The SQE slot that never gets submitted: scratch memory both processes can see. */
#define SCRATCH (ENTRIES - 1)

struct ring {
	unsigned *sq_head, *sq_tail, *sq_mask, *sq_flags, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe *cqes;
	struct io_uring_sqe *sqes;
	/* The launcher's address of `sqes` (where the SQPOLL thread sees it). */
	unsigned long long creator_sqes;
};

static int map(int fd, struct io_uring_params *p, struct ring *r)
{
	size_t sq_len = p->sq_off.array + p->sq_entries * sizeof(unsigned);
	size_t cq_len = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
	if (p->features & IORING_FEAT_SINGLE_MMAP)
		sq_len = cq_len = sq_len > cq_len ? sq_len : cq_len;
	char *sq = mmap(0, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
			IORING_OFF_SQ_RING);
	if (sq == MAP_FAILED)
		return -1;
	char *cq = sq;
	if (!(p->features & IORING_FEAT_SINGLE_MMAP)) {
		cq = mmap(0, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
			  IORING_OFF_CQ_RING);
		if (cq == MAP_FAILED)
			return -1;
	}
	void *sqes = mmap(0, p->sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
	if (sqes == MAP_FAILED)
		return -1;
	r->sq_head = (unsigned *)(sq + p->sq_off.head);
	r->sq_tail = (unsigned *)(sq + p->sq_off.tail);
	r->sq_mask = (unsigned *)(sq + p->sq_off.ring_mask);
	r->sq_flags = (unsigned *)(sq + p->sq_off.flags);
	r->sq_array = (unsigned *)(sq + p->sq_off.array);
	r->cq_head = (unsigned *)(cq + p->cq_off.head);
	r->cq_tail = (unsigned *)(cq + p->cq_off.tail);
	r->cq_mask = (unsigned *)(cq + p->cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(cq + p->cq_off.cqes);
	r->sqes = sqes;
	return 0;
}

/* The params a child needs to map the ring, and the launcher's SQE address. */
static void encode(char *out, size_t size, struct io_uring_params *p, void *sqes)
{
	snprintf(out, size, "%u,%u,%u,%u,%u,%u,%u,%u,%u,%u,%u,%u,%u,%llx", p->sq_entries,
		 p->cq_entries, p->features, p->sq_off.head, p->sq_off.tail, p->sq_off.ring_mask,
		 p->sq_off.flags, p->sq_off.array, p->cq_off.head, p->cq_off.tail,
		 p->cq_off.ring_mask, p->cq_off.cqes, p->flags,
		 (unsigned long long)(unsigned long)sqes);
}

static int decode(const char *in, struct io_uring_params *p, unsigned long long *sqes)
{
	memset(p, 0, sizeof *p);
	return sscanf(in, "%u,%u,%u,%u,%u,%u,%u,%u,%u,%u,%u,%u,%u,%llx", &p->sq_entries,
		      &p->cq_entries, &p->features, &p->sq_off.head, &p->sq_off.tail,
		      &p->sq_off.ring_mask, &p->sq_off.flags, &p->sq_off.array, &p->cq_off.head,
		      &p->cq_off.tail, &p->cq_off.ring_mask, &p->cq_off.cqes, &p->flags,
		      sqes) == 14
		       ? 0
		       : -1;
}

/* Queues SQE slot 0 (a copy of `sqe`), then waits for its completion (at most 5 s):
 * through io_uring_enter, or, with SQPOLL, by watching the rings. */
static int submit(int fd, struct ring *r, int sqpoll, struct io_uring_sqe *sqe, int *res)
{
	r->sqes[0] = *sqe;
	unsigned tail = *r->sq_tail;
	r->sq_array[tail & *r->sq_mask] = 0;
	__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (!sqpoll) {
		if (syscall(SYS_io_uring_enter, fd, 1, 1, IORING_ENTER_GETEVENTS, 0, 0) < 0)
			return -errno;
	} else if (__atomic_load_n(r->sq_flags, __ATOMIC_ACQUIRE) & IORING_SQ_NEED_WAKEUP) {
		if (syscall(SYS_io_uring_enter, fd, 0, 0, IORING_ENTER_SQ_WAKEUP, 0, 0) < 0)
			printf("wakeup errno %d\n", errno);
	}
	for (int i = 0; i < 500; i++) {
		unsigned head = *r->cq_head;
		if (head != __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE)) {
			*res = r->cqes[head & *r->cq_mask].res;
			__atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
			return 0;
		}
		struct timespec t = { 0, 10 * 1000 * 1000 };
		nanosleep(&t, 0);
	}
	return -ETIMEDOUT;
}

static int launch(int argc, char **argv)
{
	if (argc < 6 || strcmp(argv[4], "--") != 0) {
		fprintf(stderr, "usage: attack_uring launch exec|fork enter|sqpoll -- PROGRAM ARGS...\n");
		return 2;
	}
	int fork_mode = strcmp(argv[2], "fork") == 0;
	struct io_uring_params p = { 0 };
	if (strcmp(argv[3], "sqpoll") == 0) {
		p.flags = IORING_SETUP_SQPOLL;
		p.sq_thread_idle = 20000; /* ms the poll thread stays awake without work */
	}
	int fd = syscall(SYS_io_uring_setup, ENTRIES, &p);
	if (fd < 0) {
		printf("launch: io_uring_setup errno %d\n", errno);
		return 3;
	}
	struct ring r;
	if (map(fd, &p, &r) != 0) {
		printf("launch: mmap errno %d\n", errno);
		return 3;
	}
	if (p.flags & IORING_SETUP_SQPOLL) {
		/* The poll thread may start asleep (IORING_SQ_NEED_WAKEUP: 6.18 does): one
		 * request wakes it, and it then stays awake for sq_thread_idle after it. */
		struct io_uring_sqe nop = { .opcode = IORING_OP_NOP };
		int res, rc = submit(fd, &r, 1, &nop, &res);
		if (rc != 0 || res != 0) {
			printf("launch: NOP to wake the poll thread: %d\n", rc ? rc : res);
			return 3;
		}
	}
	fcntl(fd, F_SETFD, 0);
	char fd_text[16], info[512];
	snprintf(fd_text, sizeof fd_text, "%d", fd);
	encode(info, sizeof info, &p, r.sqes);
	char **args = &argv[5];
	for (char **a = args; *a; a++) {
		if (strcmp(*a, "@RINGFD@") == 0)
			*a = fd_text;
		else if (strcmp(*a, "@RINGINFO@") == 0)
			*a = info;
	}
	fflush(stdout);
	pid_t child = fork_mode ? fork() : 0;
	if (child == 0) {
		execvp(args[0], args);
		fprintf(stderr, "attack_uring: exec %s: %s\n", args[0], strerror(errno));
		_exit(127);
	}
	int status = 0;
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#include "attack_local.h"

static int child(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: attack_uring child enter|sqpoll RINGFD RINGINFO PORT\n");
		return 2;
	}
	alarm(30);
	int sqpoll = strcmp(argv[2], "sqpoll") == 0;
	int fd = atoi(argv[3]);
	int port = atoi(argv[5]);
	/* First, before this process opens anything that could take the number. */
	char link[64], target[128] = "";
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	if (fcntl(fd, F_GETFD) < 0) {
		printf("ring fd errno %d\n", errno);
	} else {
		ssize_t n = readlink(link, target, sizeof target - 1);
		target[n > 0 ? n : 0] = 0;
		printf("ring fd ok %s\n", target);
	}
	char probe[sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op)];
	memset(probe, 0, sizeof probe);
	if (syscall(SYS_io_uring_register, fd, IORING_REGISTER_PROBE, probe, 256) == 0)
		printf("register ok\n");
	else
		printf("register errno %d\n", errno);
	if (syscall(SYS_io_uring_enter, fd, 0, 0, 0, 0, 0) >= 0)
		printf("enter ok\n");
	else
		printf("enter errno %d\n", errno);

	struct io_uring_params p;
	struct ring r;
	if (decode(argv[4], &p, &r.creator_sqes) != 0) {
		fprintf(stderr, "attack_uring: bad RINGINFO %s\n", argv[4]);
		return 2;
	}
	if (map(fd, &p, &r) != 0) {
		printf("mmap errno %d\n", errno);
	} else {
		printf("mmap ok\n");
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
		struct io_uring_sqe sqe;
		int res = 0, rc, sock = -1;
		if (sqpoll) {
			/* The poll thread reads the sockaddr in the launcher's memory: put it
			 * in the shared scratch SQE and point at the launcher's mapping. */
			memcpy(&r.sqes[SCRATCH], &sin, sizeof sin);
			memset(&sqe, 0, sizeof sqe);
			sqe.opcode = OP_SOCKET;
			sqe.fd = AF_INET;
			sqe.off = SOCK_STREAM;
			rc = submit(fd, &r, 1, &sqe, &res);
			printf("uring socket res %d\n", rc ? rc : res);
			sock = rc ? -1 : res;
		} else {
			sock = socket(AF_INET, SOCK_STREAM, 0);
		}
		if (sock >= 0) {
			memset(&sqe, 0, sizeof sqe);
			sqe.opcode = OP_BIND;
			sqe.fd = sock;
			sqe.addr = sqpoll ? r.creator_sqes + SCRATCH * sizeof(struct io_uring_sqe)
					  : (unsigned long)&sin;
			sqe.addr2 = sizeof sin;
			rc = submit(fd, &r, sqpoll, &sqe, &res);
			printf("uring bind res %d\n", rc ? rc : res);
			if (rc == 0 && res == 0) {
				if (sqpoll) {
					memset(&sqe, 0, sizeof sqe);
					sqe.opcode = OP_LISTEN;
					sqe.fd = sock;
					sqe.len = 16;
					rc = submit(fd, &r, 1, &sqe, &res);
					printf("uring listen res %d\n", rc ? rc : res);
				} else if (listen(sock, 16) == 0) {
					printf("listen ok local %s\n", local_of(sock));
				} else {
					printf("listen error %d\n", errno);
				}
			}
		}
	}
	ready_then_wait();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "launch") == 0)
		return launch(argc, argv);
	if (argc > 1 && strcmp(argv[1], "child") == 0)
		return child(argc, argv);
	fprintf(stderr, "usage: attack_uring launch|child ...\n");
	return 2;
}
