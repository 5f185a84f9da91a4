/* Found in review: a way around the policy that force-bind must close (tests/escapes.rs). */
// One thread flips IPV6_V6ONLY on an unbound AF_INET6 socket; another binds [::]:0.
// Under force-bind -b 127.0.0.1 a dual-stack [::] bind must become [::ffff:127.0.0.1];
// an escape is a socket bound to [::] with V6ONLY off (reachable on every IPv4 address).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <time.h>
#include <errno.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
static volatile int s, stop;
static void *flip(void*x){ int v=0; while(!stop){ v^=1; setsockopt(s,IPPROTO_IPV6,IPV6_V6ONLY,&v,sizeof v);} return 0;}
int main(int c,char**v){ double secs=c>1?atof(v[1]):3;
  s=socket(AF_INET6,SOCK_STREAM,0); pthread_t t; pthread_create(&t,0,flip,0);
  struct timespec t0,t1; clock_gettime(CLOCK_MONOTONIC,&t0); long n=0,esc=0,ok=0;
  for(;;){ clock_gettime(CLOCK_MONOTONIC,&t1); if(t1.tv_sec-t0.tv_sec+(t1.tv_nsec-t0.tv_nsec)/1e9>secs)break; n++;
    struct sockaddr_in6 a={.sin6_family=AF_INET6}; a.sin6_addr=in6addr_any;
    if(bind(s,(void*)&a,sizeof a)==0){ ok++; struct sockaddr_in6 g; socklen_t l=sizeof g; getsockname(s,(void*)&g,&l);
      int v6=-1; l=sizeof v6; getsockopt(s,IPPROTO_IPV6,IPV6_V6ONLY,&v6,&l);
      if(IN6_IS_ADDR_UNSPECIFIED(&g.sin6_addr) && v6==0){ esc++; if(esc<=2) printf("ESCAPE: [::]:%d dual-stack\n",ntohs(g.sin6_port)); }
      int old=s; s=socket(AF_INET6,SOCK_STREAM,0); (void)old; }
  }
  stop=1; pthread_join(t,0); printf("tries %ld bound %ld escapes %ld\n",n,ok,esc); return 0;}
