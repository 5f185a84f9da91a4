/*
 * sd_activate.c: a minimal, static stand-in for systemd-socket-activate, for the
 * old-kernel VM test (tests/vm/), whose busybox initramfs has no systemd.
 *
 * Usage: sd_activate IP PORT NAME PROGRAM [ARGS...]
 * Opens a TCP socket of IP's family, binds it to IP:PORT and listens, puts it at
 * fd 3 without close-on-exec, and execs PROGRAM with the environment systemd gives
 * an activated service (sd_listen_fds(3)):
 *     LISTEN_FDS=1  LISTEN_PID=<this PID, which PROGRAM keeps>  LISTEN_FDNAMES=NAME
 * Exit status: PROGRAM's; 125 when the socket cannot be set up, 127 when PROGRAM
 * cannot be run, 2 on a bad command line.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_FDS_START 3

static int fail(const char *step)
{
	perror(step);
	return 125;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	char pid[32];
	int fd, one = 1;

	if (argc < 5) {
		fprintf(stderr, "usage: %s IP PORT NAME PROGRAM [ARGS...]\n", argv[0]);
		return 2;
	}
	memset(&ss, 0, sizeof(ss));
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
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		return fail("setsockopt SO_REUSEADDR");
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		return fail("bind");
	if (listen(fd, 16) < 0)
		return fail("listen");
	if (fd != LISTEN_FDS_START) {
		/* dup2 clears FD_CLOEXEC on the new descriptor. */
		if (dup2(fd, LISTEN_FDS_START) < 0)
			return fail("dup2");
		close(fd);
	} else if (fcntl(fd, F_SETFD, 0) < 0) {
		return fail("fcntl F_SETFD");
	}

	/* exec keeps the PID, so LISTEN_PID names PROGRAM, as systemd's does. */
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	if (setenv("LISTEN_FDS", "1", 1) < 0 || setenv("LISTEN_PID", pid, 1) < 0 ||
	    setenv("LISTEN_FDNAMES", argv[3], 1) < 0)
		return fail("setenv");
	execvp(argv[4], argv + 4);
	perror(argv[4]);
	return 127;
}
