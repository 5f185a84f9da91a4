/* Found in review: a way around the policy that force-bind must close (tests/attacks.rs). */
// connect() then listen(): a TCP (or MPTCP) socket connects to a closed loopback port
// and gets ECONNREFUSED. The kernel gives back the port the connect autobound
// (inet_put_port clears inet_num) and tcp_disconnect() clears the source address,
// but getsockname() still reports the old port. listen() then binds the wildcard on
// an ephemeral port: a check that calls a socket with a port "bound" lets it through.
//
// usage: attack_connect_listen 4|6 tcp|mptcp PORT
//   PORT 0: the kernel picks the ports; otherwise IP_LOCAL_PORT_RANGE (Linux 6.3+)
//   narrows this socket's ephemeral range to PORT alone, so connect and listen both
//   take PORT.
// Prints `socket error E`, `range error E` (then exits 3: the variant cannot run
// here), else `connect errno E local ADDR`, then `listen ok local ADDR` or
// `listen error E`, then `ready`; holds the socket until stdin closes (at most 30 s).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51
#endif

#include "attack_local.h"

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: attack_connect_listen 4|6 tcp|mptcp PORT\n");
		return 2;
	}
	alarm(30);
	int six = strcmp(argv[1], "6") == 0;
	int proto = strcmp(argv[2], "mptcp") == 0 ? IPPROTO_MPTCP : 0;
	unsigned port = (unsigned)atoi(argv[3]);
	int s = socket(six ? AF_INET6 : AF_INET, SOCK_STREAM, proto);
	if (s < 0) {
		printf("socket error %d\n", errno);
		return 3;
	}
	if (port) {
		unsigned range = port << 16 | port; /* high 16 bits: upper bound */
		if (setsockopt(s, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &range, sizeof range) != 0) {
			printf("range error %d\n", errno);
			return 3;
		}
	}
	/* Port 1 (tcpmux): nothing listens there in a fresh network namespace. */
	struct sockaddr_in to4 = { .sin_family = AF_INET, .sin_port = htons(1) };
	struct sockaddr_in6 to6 = { .sin6_family = AF_INET6, .sin6_port = htons(1) };
	to4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	to6.sin6_addr = in6addr_loopback;
	int rc = six ? connect(s, (struct sockaddr *)&to6, sizeof to6)
		     : connect(s, (struct sockaddr *)&to4, sizeof to4);
	printf("connect errno %d local %s\n", rc == 0 ? 0 : errno, local_of(s));
	if (listen(s, 16) == 0)
		printf("listen ok local %s\n", local_of(s));
	else
		printf("listen error %d\n", errno);
	ready_then_wait();
	return 0;
}
