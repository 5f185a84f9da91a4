/*
 * hostile_bind.c: a test target that calls bind(2) with hostile arguments, for
 * tests/hostile.rs. Every call goes through syscall(SYS_bind, ...), so the kernel
 * (or force-bind) sees exactly the registers written here: no libc wrapper that
 * could check or truncate anything first.
 *
 * Usage:
 *   hostile_bind cases
 *       Runs every case once, in order, and prints one line per case:
 *           case NAME errno N
 *           case NAME ok ADDR          (ADDR: what getsockname() says)
 *       then `done` and exits with status 7 (so a test can tell the target's own
 *       status from force-bind's).
 *   hostile_bind threads ROUNDS ASKED_IP
 *       One thread runs every case ROUNDS times, while another binds ROUNDS plain
 *       TCP sockets to ASKED_IP:0. Prints
 *           hostile rounds R unstable U        (U: cases whose result changed)
 *           normal binds N ok K at ADDR|mixed|none errors E
 *       and exits 7.
 *
 * The cases (their names are what the test's table refers to):
 *   pointers: NULL, an unmapped page, a PROT_NONE page, a sockaddr that starts 8
 *     bytes before an unmapped page, a kernel address, a read-only page (valid);
 *   lengths: 0, 1, 2, 15, 16, 128, 129, 4096, 2^31, -1 (as the int the kernel
 *     reads), and the AF_INET6 minimum (24) on either side;
 *   families: unknown, AF_UNIX bytes on an IP socket, AF_UNSPEC with 0.0.0.0 and
 *     with 127.0.0.1, AF_INET on AF_INET6 and back, an IP sockaddr on an AF_UNIX
 *     socket, an address not on this host;
 *   descriptors: closed, negative, above RLIMIT_NOFILE, INT_MAX, a pipe, /dev/null;
 *   combinations whose kernel order decides the errno (bad fd + bad pointer, ...);
 *   a second bind on a socket that is already bound.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

/* What the bind is called on. */
enum fd_kind {
	SOCK_V4,	/* AF_INET stream socket */
	SOCK_V6,	/* AF_INET6 stream socket (dual-stack, the Linux default) */
	SOCK_UNIX,	/* AF_UNIX stream socket */
	FD_CLOSED,	/* a descriptor number below the limit that is not open */
	FD_NEG,		/* -1 */
	FD_HUGE,	/* 1 << 30: far above RLIMIT_NOFILE */
	FD_INTMAX,	/* INT_MAX */
	FD_PIPE,	/* the read end of a pipe */
	FD_DEVNULL,	/* /dev/null */
};

/* Where the sockaddr pointer points. */
enum ptr_kind {
	P_GOOD,		/* a writable buffer on the stack */
	P_NULL,
	P_UNMAPPED,	/* a page that was unmapped */
	P_PROTNONE,	/* a PROT_NONE page */
	P_STRADDLE,	/* 8 bytes before an unmapped page: the rest is not readable */
	P_KERNEL,	/* a kernel-half address */
	P_READONLY,	/* a PROT_READ page holding 127.0.0.1:0 (valid) */
};

/* What the sockaddr says. */
enum addr_kind {
	A_V4_LO,	/* AF_INET 127.0.0.1:0 */
	A_V4_NONLOCAL,	/* AF_INET 192.0.2.1:0 (TEST-NET-1, on no interface) */
	A_V6_LO,	/* AF_INET6 [::1]:0 */
	A_V4MAPPED_LO,	/* AF_INET6 [::ffff:127.0.0.1]:0 */
	A_UNSPEC_ANY,	/* AF_UNSPEC 0.0.0.0:0 */
	A_UNSPEC_LO,	/* AF_UNSPEC 127.0.0.1:0 */
	A_UNKNOWN,	/* family 0x1234 */
	A_UNIX,		/* AF_UNIX "\0hostile" (abstract) */
};

struct hcase {
	const char *name;
	enum fd_kind fd;
	enum ptr_kind ptr;
	enum addr_kind addr;
	unsigned long len;
	int twice;	/* bind once as asked first, report the second bind */
};

#define LEN_2P31 0x80000000UL
#define LEN_MINUS1 0xffffffffUL

static const struct hcase cases[] = {
	/* pointers */
	{"ptr_null", SOCK_V4, P_NULL, A_V4_LO, 16, 0},
	{"ptr_unmapped", SOCK_V4, P_UNMAPPED, A_V4_LO, 16, 0},
	{"ptr_protnone", SOCK_V4, P_PROTNONE, A_V4_LO, 16, 0},
	{"ptr_straddle", SOCK_V4, P_STRADDLE, A_V4_LO, 16, 0},
	{"ptr_kernel", SOCK_V4, P_KERNEL, A_V4_LO, 16, 0},
	{"ptr_readonly", SOCK_V4, P_READONLY, A_V4_LO, 16, 0},
	{"ptr_null_v6", SOCK_V6, P_NULL, A_V6_LO, 28, 0},
	{"ptr_straddle_v6", SOCK_V6, P_STRADDLE, A_V6_LO, 28, 0},
	{"ptr_null_len0", SOCK_V4, P_NULL, A_V4_LO, 0, 0},
	{"ptr_unmapped_len0", SOCK_V4, P_UNMAPPED, A_V4_LO, 0, 0},
	{"ptr_null_len4096", SOCK_V4, P_NULL, A_V4_LO, 4096, 0},
	/* lengths */
	{"len_0", SOCK_V4, P_GOOD, A_V4_LO, 0, 0},
	{"len_1", SOCK_V4, P_GOOD, A_V4_LO, 1, 0},
	{"len_2", SOCK_V4, P_GOOD, A_V4_LO, 2, 0},
	{"len_15", SOCK_V4, P_GOOD, A_V4_LO, 15, 0},
	{"len_16", SOCK_V4, P_GOOD, A_V4_LO, 16, 0},
	{"len_128", SOCK_V4, P_GOOD, A_V4_LO, 128, 0},
	{"len_129", SOCK_V4, P_GOOD, A_V4_LO, 129, 0},
	{"len_4096", SOCK_V4, P_GOOD, A_V4_LO, 4096, 0},
	{"len_2p31", SOCK_V4, P_GOOD, A_V4_LO, LEN_2P31, 0},
	{"len_minus1", SOCK_V4, P_GOOD, A_V4_LO, LEN_MINUS1, 0},
	{"len_2p32_plus16", SOCK_V4, P_GOOD, A_V4_LO, 0x100000010UL, 0},
	{"v6_len_23", SOCK_V6, P_GOOD, A_V6_LO, 23, 0},
	{"v6_len_24", SOCK_V6, P_GOOD, A_V6_LO, 24, 0},
	{"v6_len_28", SOCK_V6, P_GOOD, A_V6_LO, 28, 0},
	{"v6_len_4096", SOCK_V6, P_GOOD, A_V6_LO, 4096, 0},
	/* families */
	{"family_unknown", SOCK_V4, P_GOOD, A_UNKNOWN, 16, 0},
	{"family_unknown_v6", SOCK_V6, P_GOOD, A_UNKNOWN, 28, 0},
	{"family_unix_on_v4", SOCK_V4, P_GOOD, A_UNIX, 16, 0},
	{"unspec_any_on_v4", SOCK_V4, P_GOOD, A_UNSPEC_ANY, 16, 0},
	{"unspec_lo_on_v4", SOCK_V4, P_GOOD, A_UNSPEC_LO, 16, 0},
	{"unspec_any_on_v6_len16", SOCK_V6, P_GOOD, A_UNSPEC_ANY, 16, 0},
	{"unspec_any_on_v6_len28", SOCK_V6, P_GOOD, A_UNSPEC_ANY, 28, 0},
	{"v4_on_v6_len16", SOCK_V6, P_GOOD, A_V4_LO, 16, 0},
	{"v4_on_v6_len28", SOCK_V6, P_GOOD, A_V4_LO, 28, 0},
	{"v6_on_v4_len28", SOCK_V4, P_GOOD, A_V6_LO, 28, 0},
	{"v6_on_v4_len16", SOCK_V4, P_GOOD, A_V6_LO, 16, 0},
	{"v4mapped_on_v6", SOCK_V6, P_GOOD, A_V4MAPPED_LO, 28, 0},
	{"v4_on_unix", SOCK_UNIX, P_GOOD, A_V4_LO, 16, 0},
	{"v4_nonlocal", SOCK_V4, P_GOOD, A_V4_NONLOCAL, 16, 0},
	/* descriptors */
	{"fd_closed", FD_CLOSED, P_GOOD, A_V4_LO, 16, 0},
	{"fd_negative", FD_NEG, P_GOOD, A_V4_LO, 16, 0},
	{"fd_huge", FD_HUGE, P_GOOD, A_V4_LO, 16, 0},
	{"fd_intmax", FD_INTMAX, P_GOOD, A_V4_LO, 16, 0},
	{"fd_pipe", FD_PIPE, P_GOOD, A_V4_LO, 16, 0},
	{"fd_devnull", FD_DEVNULL, P_GOOD, A_V4_LO, 16, 0},
	{"fd_pipe_v6", FD_PIPE, P_GOOD, A_V6_LO, 28, 0},
	/* combinations: the kernel looks at the descriptor first, then the length,
	 * then copies the sockaddr, then the protocol checks it */
	{"fd_closed_ptr_null", FD_CLOSED, P_NULL, A_V4_LO, 16, 0},
	{"fd_pipe_ptr_unmapped", FD_PIPE, P_UNMAPPED, A_V4_LO, 16, 0},
	{"fd_closed_len_minus1", FD_CLOSED, P_GOOD, A_V4_LO, LEN_MINUS1, 0},
	{"fd_pipe_len_4096", FD_PIPE, P_GOOD, A_V4_LO, 4096, 0},
	{"fd_closed_len_0", FD_CLOSED, P_GOOD, A_V4_LO, 0, 0},
	{"fd_devnull_family_unknown", FD_DEVNULL, P_GOOD, A_UNKNOWN, 16, 0},
	{"fd_huge_ptr_kernel", FD_HUGE, P_KERNEL, A_V4_LO, 16, 0},
	{"len_4096_ptr_unmapped", SOCK_V4, P_UNMAPPED, A_V4_LO, 4096, 0},
	{"len_15_ptr_null", SOCK_V4, P_NULL, A_V4_LO, 15, 0},
	/* state */
	{"bound_twice", SOCK_V4, P_GOOD, A_V4_LO, 16, 1},
	{"bound_twice_v6", SOCK_V6, P_GOOD, A_V6_LO, 28, 1},
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

static long page;
/* [0] RW (straddle) [1] unmapped [2] PROT_NONE [3] PROT_READ holding 127.0.0.1:0 */
static unsigned char *pages;
static int closed_fd;

static void die(const char *what)
{
	perror(what);
	exit(3);
}

static size_t fill(unsigned char *buf, enum addr_kind kind)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)buf;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)buf;
	struct sockaddr_un *sun = (struct sockaddr_un *)buf;

	memset(buf, 0, 128);
	switch (kind) {
	case A_V4_LO:
	case A_V4_NONLOCAL:
	case A_UNSPEC_ANY:
	case A_UNSPEC_LO:
		sin->sin_family = (kind == A_V4_LO || kind == A_V4_NONLOCAL) ? AF_INET : AF_UNSPEC;
		sin->sin_addr.s_addr = kind == A_UNSPEC_ANY ? htonl(INADDR_ANY)
				     : kind == A_V4_NONLOCAL ? htonl(0xc0000201)
							     : htonl(INADDR_LOOPBACK);
		return sizeof(*sin);
	case A_V6_LO:
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		return sizeof(*sin6);
	case A_V4MAPPED_LO:
		sin6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6->sin6_addr);
		return sizeof(*sin6);
	case A_UNKNOWN:
		*(uint16_t *)buf = 0x1234;
		buf[4] = 127;
		buf[7] = 1;
		return 16;
	case A_UNIX:
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, "\0hostile", 8);
		return 16;
	}
	return 0;
}

static int open_fd(enum fd_kind kind, int *extra)
{
	int p[2];

	*extra = -1;
	switch (kind) {
	case SOCK_V4:
		return socket(AF_INET, SOCK_STREAM, 0);
	case SOCK_V6:
		return socket(AF_INET6, SOCK_STREAM, 0);
	case SOCK_UNIX:
		return socket(AF_UNIX, SOCK_STREAM, 0);
	case FD_CLOSED:
		return closed_fd;
	case FD_NEG:
		return -1;
	case FD_HUGE:
		return 1 << 30;
	case FD_INTMAX:
		return INT_MAX;
	case FD_PIPE:
		if (pipe(p) < 0)
			die("pipe");
		*extra = p[1];
		return p[0];
	case FD_DEVNULL:
		return open("/dev/null", O_RDWR);
	}
	return -1;
}

static int owns_fd(enum fd_kind kind)
{
	return kind == SOCK_V4 || kind == SOCK_V6 || kind == SOCK_UNIX || kind == FD_PIPE ||
	       kind == FD_DEVNULL;
}

/* Runs one case; returns 0 or the errno, and writes getsockname's answer to `out`. */
static int run_case(const struct hcase *c, char *out, size_t outlen)
{
	unsigned char buf[4096 + 16] __attribute__((aligned(16)));
	unsigned char *ptr;
	int extra, err = 0;
	long rc;

	fill(buf, c->addr);
	switch (c->ptr) {
	case P_GOOD:
		ptr = buf;
		break;
	case P_NULL:
		ptr = NULL;
		break;
	case P_UNMAPPED:
		ptr = pages + page;
		break;
	case P_PROTNONE:
		ptr = pages + 2 * page;
		break;
	case P_STRADDLE:
		/* Only the first 8 bytes are readable. Each case writes its own bytes: the
		 * threads mode has one hostile thread, so nothing else writes here. */
		ptr = pages + page - 8;
		memcpy(ptr, buf, 8);
		break;
	case P_KERNEL:
		ptr = (unsigned char *)0xffffffff81000000UL;
		break;
	case P_READONLY:
		ptr = pages + 3 * page;
		break;
	default:
		ptr = buf;
	}

	int fd = open_fd(c->fd, &extra);
	if (owns_fd(c->fd) && fd < 0)
		die("socket/open");
	if (c->twice)
		syscall(SYS_bind, fd, ptr, c->len);
	rc = syscall(SYS_bind, fd, ptr, c->len);
	if (rc < 0)
		err = errno;
	out[0] = 0;
	if (rc == 0) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char text[INET6_ADDRSTRLEN] = "?";
		memset(&ss, 0, sizeof(ss));
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
			snprintf(out, outlen, "getsockname-errno-%d", errno);
		} else if (ss.ss_family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
			snprintf(out, outlen, "%s:%d", text, ntohs(sin->sin_port));
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
			snprintf(out, outlen, "[%s]:%d", text, ntohs(sin6->sin6_port));
		} else {
			snprintf(out, outlen, "family-%d", ss.ss_family);
		}
	}
	if (owns_fd(c->fd))
		close(fd);
	if (extra >= 0)
		close(extra);
	return err;
}

static void setup(void)
{
	struct rlimit rl;
	unsigned char buf[128];

	page = sysconf(_SC_PAGESIZE);
	pages = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pages == MAP_FAILED)
		die("mmap");
	fill(buf, A_V4_LO);
	memcpy(pages + 3 * page, buf, 16);
	if (munmap(pages + page, page) < 0)
		die("munmap");
	if (mprotect(pages + 2 * page, page, PROT_NONE) < 0)
		die("mprotect none");
	if (mprotect(pages + 3 * page, page, PROT_READ) < 0)
		die("mprotect read");

	/* A descriptor number that is valid but not open, and that no other thread of
	 * ours will open meanwhile (they use the lowest free numbers). */
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("getrlimit");
	closed_fd = (rl.rlim_cur > 1024 ? 1024 : (int)rl.rlim_cur) - 1;
	close(closed_fd);
}

static int run_all(void)
{
	char out[128];

	for (size_t i = 0; i < NCASES; i++) {
		int err = run_case(&cases[i], out, sizeof(out));
		if (err)
			printf("case %s errno %d\n", cases[i].name, err);
		else
			printf("case %s ok %s\n", cases[i].name, out);
		fflush(stdout);
	}
	printf("done\n");
	return 7;
}

struct normal {
	int rounds;
	const char *ip;
	int ok, errors, mixed;
	char at[64];
};

static void *hostile_thread(void *arg)
{
	int rounds = *(int *)arg;
	static int first[NCASES];
	int unstable = 0;
	char out[128];

	for (int r = 0; r < rounds; r++) {
		for (size_t i = 0; i < NCASES; i++) {
			int err = run_case(&cases[i], out, sizeof(out));
			if (r == 0)
				first[i] = err;
			else if (first[i] != err && first[i] >= 0) {
				fprintf(stderr, "unstable %s: %d then %d\n", cases[i].name, first[i], err);
				first[i] = -1;
				unstable++;
			}
		}
	}
	printf("hostile rounds %d unstable %d\n", rounds, unstable);
	fflush(stdout);
	return NULL;
}

static void *normal_thread(void *arg)
{
	struct normal *n = arg;
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	if (inet_pton(AF_INET, n->ip, &sin.sin_addr) != 1)
		die("inet_pton");
	for (int r = 0; r < n->rounds; r++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			die("socket");
		if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
			n->errors++;
		} else {
			struct sockaddr_in got;
			socklen_t gl = sizeof(got);
			char text[INET_ADDRSTRLEN] = "?";
			if (getsockname(fd, (struct sockaddr *)&got, &gl) == 0)
				inet_ntop(AF_INET, &got.sin_addr, text, sizeof(text));
			if (n->ok == 0)
				snprintf(n->at, sizeof(n->at), "%s", text);
			else if (strcmp(n->at, text) != 0)
				n->mixed = 1;
			n->ok++;
		}
		close(fd);
	}
	return NULL;
}

static int run_threads(int rounds, const char *ip)
{
	pthread_t h, n;
	struct normal normal = {.rounds = rounds, .ip = ip};

	if (pthread_create(&h, NULL, hostile_thread, &rounds) != 0)
		die("pthread_create");
	if (pthread_create(&n, NULL, normal_thread, &normal) != 0)
		die("pthread_create");
	pthread_join(h, NULL);
	pthread_join(n, NULL);
	printf("normal binds %d ok %d at %s errors %d\n", rounds, normal.ok,
	       normal.ok == 0 ? "none" : normal.mixed ? "mixed" : normal.at, normal.errors);
	return 7;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	setup();
	if (argc == 2 && strcmp(argv[1], "cases") == 0)
		return run_all();
	if (argc == 4 && strcmp(argv[1], "threads") == 0) {
		int rounds = atoi(argv[2]);
		if (rounds < 1 || rounds > 10000) {
			fprintf(stderr, "ROUNDS must be 1..10000\n");
			return 2;
		}
		return run_threads(rounds, argv[3]);
	}
	fprintf(stderr, "usage: %s cases | threads ROUNDS ASKED_IP\n", argv[0]);
	return 2;
}
