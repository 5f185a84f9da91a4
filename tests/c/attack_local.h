/*
 * attack_local.h: what the attack programs share (tests/attacks.rs): a socket's
 * local address as "IP:PORT" or "[IPv6]:PORT", for their report lines, and the end
 * of every run: say "ready", then keep the sockets until the test closes stdin.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((unused)) static const char *local_of(int s)
{
	static char out[80];
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char ip[INET6_ADDRSTRLEN] = "?";
	if (getsockname(s, (struct sockaddr *)&ss, &len) != 0) {
		snprintf(out, sizeof out, "getsockname-error-%d", errno);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
		snprintf(out, sizeof out, "[%s]:%d", ip, ntohs(a->sin6_port));
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
		snprintf(out, sizeof out, "%s:%d", ip, ntohs(a->sin_port));
	}
	return out;
}

__attribute__((unused)) static void ready_then_wait(void)
{
	printf("ready\n");
	fflush(stdout);
	char buf[64];
	while (read(0, buf, sizeof buf) > 0)
		;
}
