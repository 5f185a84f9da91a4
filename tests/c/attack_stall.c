/*
 * attack_stall.c: binds whose sockaddr force-bind cannot read without waiting
 * (tests/attacks.rs, issue 12 item 7). THREADS threads each bind a TCP socket with
 * its sockaddr on a page registered with userfaultfd that nobody ever serves: the
 * program's own bind(2) would wait there forever, and so did a supervisor reading
 * the page with process_vm_readv (a notify worker each, 64 at most, then every later
 * bind waited; the ptrace tracer, and so every thread). Then the main thread binds
 * 127.0.0.1:PORT and listens: that bind must still be served.
 *
 *   attack_stall THREADS PORT
 *
 * Prints "uffd: error E" when the kernel refuses the userfaultfd (unprivileged, or
 * no CONFIG_USERFAULTFD), "main bind: ok ADDR" or "main bind: error E", then
 * "stalled: R of N returned, errors E..." after at most 3 s, then "ready"; exits
 * when stdin closes (threads still waiting natively die with the process).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "attack_local.h"

#define MAX_THREADS 256

static void *page;
static int returned, errors[MAX_THREADS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *stalled_bind(void *unused)
{
	(void)unused;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int rc = bind(s, (struct sockaddr *)page, sizeof(struct sockaddr_in));
	pthread_mutex_lock(&lock);
	errors[returned++] = rc == 0 ? 0 : errno;
	pthread_mutex_unlock(&lock);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	int threads = atoi(argv[1]);
	int port = atoi(argv[2]);
	if (threads < 1 || threads > MAX_THREADS)
		return 2;

	int uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
	struct uffdio_api api = { .api = UFFD_API };
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) != 0) {
		printf("uffd: error %d\n", errno);
		ready_then_wait();
		return 0;
	}
	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_register reg = {
		.range = { .start = (unsigned long)page, .len = 4096 },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (page == MAP_FAILED || ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
		printf("uffd: error %d\n", errno);
		ready_then_wait();
		return 0;
	}

	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (int i = 0; i < threads; i++) {
		pthread_t t;
		if (pthread_create(&t, &attr, stalled_bind, NULL) != 0) {
			printf("pthread_create: error %d\n", errno);
			return 1;
		}
		pthread_detach(t);
	}
	/* Let every thread reach its bind first. */
	struct timespec settle = { 0, 300 * 1000 * 1000 };
	nanosleep(&settle, NULL);

	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)&a, sizeof a) == 0 && listen(s, 8) == 0)
		printf("main bind: ok %s\n", local_of(s));
	else
		printf("main bind: error %d\n", errno);
	fflush(stdout);

	/* At most 3 s for the stalled binds to come back. */
	for (int i = 0; i < 300; i++) {
		pthread_mutex_lock(&lock);
		int done = returned;
		pthread_mutex_unlock(&lock);
		if (done == threads)
			break;
		struct timespec step = { 0, 10 * 1000 * 1000 };
		nanosleep(&step, NULL);
	}
	pthread_mutex_lock(&lock);
	printf("stalled: %d of %d returned, errors", returned, threads);
	for (int i = 0; i < returned; i++)
		printf(" %d", errors[i]);
	printf("\n");
	pthread_mutex_unlock(&lock);
	ready_then_wait();
	_exit(0);
}
