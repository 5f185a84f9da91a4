/*
 * static_bind.c: a statically linked bind target for the force-bind tests.
 *
 * Usage: static_bind IP PORT
 * Creates a TCP socket of IP's family, binds it to IP:PORT, and prints what
 * getsockname() returns in bindprobe's format:
 *     bound 4 127.0.0.4:5000
 *     bound 6 [::1]:5000
 *     error 1 Operation not permitted (bind)
 * Being static, it makes its syscalls without the dynamic loader or a shared
 * libc, so force-bind cannot rely on anything injected through ld.so.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *step)
{
	int err = errno;
	printf("error %d %s (%s)\n", err, strerror(err), step);
	return 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char text[INET6_ADDRSTRLEN];
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: %s IP PORT\n", argv[0]);
		return 2;
	}
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	int port = atoi(argv[2]);
	if (inet_pton(AF_INET, argv[1], &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, argv[1], &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		len = sizeof(*sin6);
	} else {
		fprintf(stderr, "bad address %s\n", argv[1]);
		return 2;
	}

	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		return fail("socket");
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		return fail("bind");

	memset(&ss, 0, sizeof(ss));
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return fail("getsockname");
	if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
		printf("bound 4 %s:%d\n", text, ntohs(sin->sin_port));
	} else {
		inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
		printf("bound 6 [%s]:%d\n", text, ntohs(sin6->sin6_port));
	}
	close(fd);
	return 0;
}
