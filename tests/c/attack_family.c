/* Found in review: a way around the policy that force-bind must close (tests/attacks.rs). */
// Binds whose family field says one thing while the kernel binds another. Raw IPv4
// sockets never look at sin_family (net/ipv4/raw.c raw_bind reads sin_addr of any
// bytes of at least sizeof(struct sockaddr_in)), and an AF_INET6 SCTP socket takes a
// sockaddr_in as the IPv4 address it is. A policy that decodes the bytes by their
// family field sees no IP address at all (0x1234), an IPv6 one ([::1]: its flowinfo is
// where raw_bind finds the address), or an IPv4 address on an IPv6 socket.
//
// usage: attack_family raw-family|raw-v6bytes|sctp IPV4 PORT
//   raw-family:  SOCK_RAW/IPPROTO_UDP, sockaddr_in with sin_family 0x1234;
//   raw-v6bytes: SOCK_RAW/IPPROTO_UDP, a sockaddr_in6 for [::1]:PORT whose flowinfo
//                holds IPV4;
//   sctp:        AF_INET6 SOCK_STREAM IPPROTO_SCTP, a sockaddr_in for IPV4:PORT, then
//                listen().
// Prints `socket error E` (exit 3: not available here), then `bind ok local ADDR` or
// `bind error E` (and `listen ok|error E` for sctp), then `ready`; holds the socket
// until stdin closes (at most 30 s).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

#include "attack_local.h"

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: attack_family raw-family|raw-v6bytes|sctp IPV4 PORT\n");
		return 2;
	}
	alarm(30);
	const char *mode = argv[1];
	struct in_addr ip;
	if (inet_pton(AF_INET, argv[2], &ip) != 1) {
		fprintf(stderr, "attack_family: bad IPV4 %s\n", argv[2]);
		return 2;
	}
	unsigned short port = htons((unsigned short)atoi(argv[3]));
	int sctp = strcmp(mode, "sctp") == 0;
	int s = sctp ? socket(AF_INET6, SOCK_STREAM, IPPROTO_SCTP)
		     : socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
	if (s < 0) {
		printf("socket error %d\n", errno);
		return 3;
	}
	unsigned char bytes[sizeof(struct sockaddr_in6)];
	socklen_t len;
	memset(bytes, 0, sizeof bytes);
	if (strcmp(mode, "raw-v6bytes") == 0) {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = port };
		a.sin6_addr = in6addr_loopback;
		memcpy(&a.sin6_flowinfo, &ip, sizeof ip); /* where sin_addr would be */
		memcpy(bytes, &a, sizeof a);
		len = sizeof a;
	} else {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = port, .sin_addr = ip };
		if (!sctp)
			a.sin_family = 0x1234;
		memcpy(bytes, &a, sizeof a);
		len = sizeof a;
	}
	if (bind(s, (struct sockaddr *)bytes, len) == 0)
		printf("bind ok local %s\n", local_of(s));
	else
		printf("bind error %d\n", errno);
	if (sctp) {
		if (listen(s, 16) == 0)
			printf("listen ok local %s\n", local_of(s));
		else
			printf("listen error %d\n", errno);
	}
	ready_then_wait();
	return 0;
}
