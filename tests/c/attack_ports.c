/* Found in review: a way around the policy that force-bind must close (tests/attacks.rs). */
// A port-range deny rule (`-m :32768-60999=deny`) against ports the kernel picks: a
// bind of port 0 or a listen() on a socket nobody bound gets an ephemeral port, from
// net.ipv4.ip_local_port_range, which a program that is root in its network namespace
// may even set to lie inside the denied range.
//
// usage: attack_ports tcp-bind|udp-bind|listen N [LO HI]
//   N tries, each on a new socket that is kept open (so every try gets another port):
//   tcp-bind: bind(0.0.0.0:0), then listen(); udp-bind: bind(0.0.0.0:0); listen:
//   listen() on an unbound socket. With LO HI, first writes "LO HI" to this network
//   namespace's /proc/sys/net/ipv4/ip_local_port_range.
// Prints `range ok|error E`, one line per try:
//   `try I bind ok PORT|bind error E [listen ok PORT|listen error E]`
//   (for listen: `try I listen ok PORT|listen error E`), then `ready`; holds the
//   sockets until stdin closes (at most 30 s).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "attack_local.h"

static int port_of(int s)
{
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	return getsockname(s, (struct sockaddr *)&a, &len) == 0 ? ntohs(a.sin_port) : -1;
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 5) {
		fprintf(stderr, "usage: attack_ports tcp-bind|udp-bind|listen N [LO HI]\n");
		return 2;
	}
	alarm(30);
	const char *mode = argv[1];
	int n = atoi(argv[2]);
	if (n < 1 || n > 500) {
		fprintf(stderr, "attack_ports: N out of 1..500\n");
		return 2;
	}
	if (argc == 5) {
		char text[32];
		int len = snprintf(text, sizeof text, "%s %s\n", argv[3], argv[4]);
		int fd = open("/proc/sys/net/ipv4/ip_local_port_range", O_WRONLY);
		if (fd >= 0 && write(fd, text, len) == len)
			printf("range ok\n");
		else
			printf("range error %d\n", errno);
		if (fd >= 0)
			close(fd);
	}
	int udp = strcmp(mode, "udp-bind") == 0;
	int bind_first = strcmp(mode, "listen") != 0;
	for (int i = 0; i < n; i++) {
		int s = socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
		if (s < 0) {
			printf("try %d socket error %d\n", i, errno);
			continue;
		}
		printf("try %d", i);
		if (bind_first) {
			struct sockaddr_in any = { .sin_family = AF_INET };
			if (bind(s, (struct sockaddr *)&any, sizeof any) == 0) {
				printf(" bind ok %d", port_of(s));
			} else {
				printf(" bind error %d\n", errno);
				close(s);
				continue;
			}
		}
		if (!udp) {
			if (listen(s, 4) == 0)
				printf(" listen ok %d", port_of(s));
			else
				printf(" listen error %d", errno);
		}
		printf("\n");
	}
	ready_then_wait();
	return 0;
}
