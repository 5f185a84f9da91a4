/*
 * int80_bind.c: binds through the i386 syscall ABI, with `int $0x80`: bind (361) or
 * socketcall(SYS_BIND) (102). Built both 64-bit (a 64-bit program may use the i386
 * ABI at any time, and force-bind must not be stepped around that way) and 32-bit.
 *
 * Usage: int80_bind direct|socketcall IPV4 PORT
 * Prints bindprobe's format: "bound 4 IP:PORT" or "error ERRNO (bind)".
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#ifndef MAP_32BIT
#define MAP_32BIT 0 /* a 32-bit program's addresses all fit */
#endif

static long int80(long nr, long a, long b, long c)
{
	long ret;
#ifdef __x86_64__
	/* The 64-bit kernel clears r8-r11 on this path. */
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory", "r8", "r9", "r10", "r11");
#else
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
#endif
	return ret;
}

int main(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[1], "direct") && strcmp(argv[1], "socketcall"))) {
		fprintf(stderr, "usage: %s direct|socketcall IPV4 PORT\n", argv[0]);
		return 2;
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	/* Pointers passed through int $0x80 are truncated to 32 bits. */
	unsigned char *low = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (low == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	struct sockaddr_in *sin = (struct sockaddr_in *)low;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(atoi(argv[3]));
	if (inet_pton(AF_INET, argv[2], &sin->sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", argv[2]);
		return 2;
	}
	long r;
	if (!strcmp(argv[1], "direct")) {
		r = int80(361, fd, (long)(unsigned long)sin, sizeof(*sin));
	} else {
		unsigned int *args = (unsigned int *)(low + 64);
		args[0] = fd;
		args[1] = (unsigned int)(unsigned long)sin;
		args[2] = sizeof(*sin);
		r = int80(102, 2 /* SYS_BIND */, (long)(unsigned long)args, 0);
	}
	if (r < 0) {
		printf("error %ld (bind)\n", -r);
		return 1;
	}
	struct sockaddr_in got;
	socklen_t len = sizeof(got);
	char text[INET_ADDRSTRLEN];
	getsockname(fd, (struct sockaddr *)&got, &len);
	printf("bound 4 %s:%d\n", inet_ntop(AF_INET, &got.sin_addr, text, sizeof(text)), ntohs(got.sin_port));
	return 0;
}
