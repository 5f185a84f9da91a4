/* Found in review: a way around the policy that force-bind must close (tests/escapes.rs). */
// starts as root, drops to nobody, unshare(CLONE_NEWUSER) (own caps in a new userns only), binds 127.0.0.1:81
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sched.h>
#include <unistd.h>
#include <grp.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
int main(int c,char**v){
  setgroups(0,0); if(setresgid(65534,65534,65534)||setresuid(65534,65534,65534)){perror("setresuid");return 1;}
  if(c>1 && unshare(CLONE_NEWUSER)) { perror("unshare"); return 1; }
  int s=socket(AF_INET,SOCK_STREAM,0); struct sockaddr_in a={.sin_family=AF_INET,.sin_port=htons(81)}; a.sin_addr.s_addr=htonl(0x7f000001);
  int r=bind(s,(void*)&a,sizeof a); printf("uid %d bind 127.0.0.1:81: %d %s\n",getuid(),r,r?strerror(errno):"ok"); return 0;}
