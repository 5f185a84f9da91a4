/*
 * sd_activate_multi.c: systemd socket activation with stream and datagram sockets
 * together, for tests/servers.rs (dnsmasq needs one of each per family);
 * systemd-socket-activate's --datagram applies to every socket it opens.
 *
 * Usage: sd_activate_multi [--names NAME:NAME...] SPEC... [--] PROGRAM [ARGS...]
 * SPEC is tcp:IP:PORT or udp:IP:PORT, an IPv6 address in brackets (udp:[::1]:53).
 * Each SPEC is opened in the order given (SO_REUSEADDR, IPV6_V6ONLY on IPv6 sockets,
 * listen() on tcp ones) and put at fds 3, 4, ... without close-on-exec; PROGRAM is
 * exec'd with the environment systemd gives an activated service (sd_listen_fds(3)):
 *     LISTEN_FDS=<count>  LISTEN_PID=<this PID, which PROGRAM keeps>
 *     LISTEN_FDNAMES=NAMES (only with --names, which must name every socket)
 * Unlike systemd-socket-activate it does not wait for a first connection.
 * Exit status: PROGRAM's; 125 when a socket cannot be set up, 127 when PROGRAM
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
#define MAX_SOCKETS 16
/* Above every descriptor the sockets end up at, so moving them never collides. */
#define PARK_FD 100

static int usage(const char *argv0, const char *why)
{
	fprintf(stderr, "%s: %s\nusage: %s [--names NAME:NAME...] tcp|udp:IP:PORT... [--] PROGRAM [ARGS...]\n",
		argv0, why, argv0);
	return 2;
}

/* Parses "IP:PORT" or "[IPv6]:PORT" into ss; returns its length, 0 if malformed. */
static socklen_t parse_addr(char *text, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	char *colon = strrchr(text, ':');
	char *host = text, *end;
	long port;

	if (!colon)
		return 0;
	*colon = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || port < 0 || port > 65535)
		return 0;
	memset(ss, 0, sizeof(*ss));
	if (host[0] == '[') {
		size_t n = strlen(host);
		if (n < 2 || host[n - 1] != ']')
			return 0;
		host[n - 1] = '\0';
		host++;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return 0;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		return sizeof(*sin6);
	}
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		return 0;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	return sizeof(*sin);
}

/* Opens the socket SPEC describes, parked at PARK_FD + i (close-on-exec for now). */
static int open_spec(const char *spec, int i)
{
	struct sockaddr_storage ss;
	char addr[128];
	int stream, fd, parked, one = 1;
	socklen_t len;

	if (strncmp(spec, "tcp:", 4) == 0)
		stream = 1;
	else if (strncmp(spec, "udp:", 4) == 0)
		stream = 0;
	else
		return -2;
	if (strlen(spec + 4) >= sizeof(addr))
		return -2;
	strcpy(addr, spec + 4);
	len = parse_addr(addr, &ss);
	if (!len)
		return -2;
	fd = socket(ss.ss_family, stream ? SOCK_STREAM : SOCK_DGRAM, 0);
	if (fd < 0) {
		perror("socket");
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
		perror("setsockopt SO_REUSEADDR");
		return -1;
	}
	if (ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) {
		perror("setsockopt IPV6_V6ONLY");
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		fprintf(stderr, "bind %s: ", spec);
		perror(NULL);
		return -1;
	}
	if (stream && listen(fd, 128) < 0) {
		perror("listen");
		return -1;
	}
	parked = fcntl(fd, F_DUPFD_CLOEXEC, PARK_FD + i);
	if (parked < 0) {
		perror("fcntl F_DUPFD_CLOEXEC");
		return -1;
	}
	close(fd);
	return parked;
}

int main(int argc, char **argv)
{
	int parked[MAX_SOCKETS], n = 0, i = 1;
	const char *names = NULL;
	char value[32];

	if (i + 1 < argc && strcmp(argv[i], "--names") == 0) {
		names = argv[i + 1];
		i += 2;
	}
	for (; i < argc && (strncmp(argv[i], "tcp:", 4) == 0 || strncmp(argv[i], "udp:", 4) == 0); i++) {
		if (n == MAX_SOCKETS)
			return usage(argv[0], "too many sockets");
		parked[n] = open_spec(argv[i], n);
		if (parked[n] == -2)
			return usage(argv[0], "bad socket spec");
		if (parked[n] < 0)
			return 125;
		n++;
	}
	if (i < argc && strcmp(argv[i], "--") == 0)
		i++;
	if (n == 0 || i >= argc)
		return usage(argv[0], "no socket or no program");
	if (names) {
		int count = 1;
		for (const char *c = names; *c; c++)
			count += *c == ':';
		if (count != n)
			return usage(argv[0], "--names must name every socket");
	}

	for (int k = 0; k < n; k++) {
		/* dup2 clears FD_CLOEXEC on the new descriptor. */
		if (dup2(parked[k], LISTEN_FDS_START + k) < 0) {
			perror("dup2");
			return 125;
		}
		close(parked[k]);
	}

	/* exec keeps the PID, so LISTEN_PID names PROGRAM, as systemd's does. */
	snprintf(value, sizeof(value), "%d", n);
	if (setenv("LISTEN_FDS", value, 1) < 0)
		return 125;
	snprintf(value, sizeof(value), "%ld", (long)getpid());
	if (setenv("LISTEN_PID", value, 1) < 0)
		return 125;
	if (names ? setenv("LISTEN_FDNAMES", names, 1) < 0 : unsetenv("LISTEN_FDNAMES") < 0)
		return 125;
	execvp(argv[i], argv + i);
	perror(argv[i]);
	return 127;
}
