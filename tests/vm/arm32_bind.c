/*
 * arm32_bind.c: an AArch32 (32-bit ARM, EABI) bind target for the arm64 VM, the
 * compat ABI an aarch64 kernel runs beside its own (as i386 is to x86_64).
 *
 * Usage: arm32_bind IPV4 PORT
 * Binds a TCP socket to IPV4:PORT and prints what getsockname() returns, in
 * bindprobe's format ("bound 4 127.0.0.4:5000", "error 1 (bind)").
 *
 * Freestanding (no libc: Debian's arm64 cross toolchain has no armhf sysroot), so
 * every syscall is an `svc #0` with its EABI number in r7 (arch/arm/tools/syscall.tbl).
 * Built by tests/vm/run.sh with clang --target=armv7a-linux-gnueabi -nostdlib.
 */

#define NR_exit_group 248
#define NR_write 4
#define NR_socket 281
#define NR_bind 282
#define NR_getsockname 286

static long sys3(long nr, long a, long b, long c)
{
	register long r0 __asm__("r0") = a;
	register long r1 __asm__("r1") = b;
	register long r2 __asm__("r2") = c;
	register long r7 __asm__("r7") = nr;
	__asm__ volatile("svc #0" : "+r"(r0) : "r"(r1), "r"(r2), "r"(r7) : "memory");
	return r0;
}

static char out[64];
static int used;

static void put(const char *s)
{
	while (*s && used < (int)sizeof(out))
		out[used++] = *s++;
}

static void put_num(unsigned long v)
{
	char digits[12];
	int n = 0;
	do {
		/* No division: AArch32 code built for plain ARMv7 would call libgcc. */
		unsigned long q = 0;
		while (v >= 10) {
			v -= 10;
			q++;
		}
		digits[n++] = (char)('0' + v);
		v = q;
	} while (v);
	while (n && used < (int)sizeof(out))
		out[used++] = digits[--n];
}

static int parse_num(const char **s, unsigned long *v)
{
	const char *p = *s;
	*v = 0;
	if (*p < '0' || *p > '9')
		return 0;
	while (*p >= '0' && *p <= '9')
		*v = *v * 10 + (unsigned long)(*p++ - '0');
	*s = p;
	return 1;
}

static void finish(int status)
{
	put("\n");
	sys3(NR_write, 1, (long)out, used);
	sys3(NR_exit_group, status, 0, 0);
	for (;;) {
	}
}

static void fail(long rc, const char *step)
{
	put("error ");
	put_num((unsigned long)-rc);
	put(" (");
	put(step);
	put(")");
	finish(1);
}

struct sockaddr_in4 {
	unsigned short family;
	unsigned char port[2];
	unsigned char addr[4];
	unsigned char zero[8];
};

void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	struct sockaddr_in4 sin = { .family = 2 };
	unsigned long v;
	const char *p;

	if (argc != 3) {
		put("usage: arm32_bind IPV4 PORT");
		finish(2);
	}
	p = argv[1];
	for (int i = 0; i < 4; i++) {
		if (!parse_num(&p, &v) || v > 255 || *p != (i < 3 ? '.' : '\0')) {
			put("bad address");
			finish(2);
		}
		sin.addr[i] = (unsigned char)v;
		p++;
	}
	p = argv[2];
	if (!parse_num(&p, &v) || *p || v > 65535) {
		put("bad port");
		finish(2);
	}
	sin.port[0] = (unsigned char)(v >> 8);
	sin.port[1] = (unsigned char)v;

	long fd = sys3(NR_socket, 2 /* AF_INET */, 1 /* SOCK_STREAM */, 0);
	if (fd < 0)
		fail(fd, "socket");
	long rc = sys3(NR_bind, fd, (long)&sin, sizeof sin);
	if (rc < 0)
		fail(rc, "bind");
	struct sockaddr_in4 got = { 0 };
	long len = sizeof got;
	rc = sys3(NR_getsockname, fd, (long)&got, (long)&len);
	if (rc < 0)
		fail(rc, "getsockname");
	put("bound 4 ");
	for (int i = 0; i < 4; i++) {
		put_num(got.addr[i]);
		put(i < 3 ? "." : ":");
	}
	put_num((unsigned long)got.port[0] << 8 | got.port[1]);
	finish(0);
}

/* The kernel starts us with sp at argc; keep the stack 8-byte aligned for AAPCS. */
__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	mov r0, sp\n"
	"	bic sp, sp, #7\n"
	"	bl start_c\n");
