// manual.rs: force-bind(1) and the shell completions, generated from the clap
// definition in cli.rs so that they can never describe options force-bind lacks.
// `force-bind --generate-man` and `force-bind --completions SHELL` print them; the
// Debian package and the README's install steps use those.

use std::io::{self, Write};

use clap_complete::Shell;
use clap_mangen::Man;

use crate::cli;

/// Writes the force-bind(1) page (roff): clap_mangen's NAME, SYNOPSIS, DESCRIPTION and
/// OPTIONS from the clap definition, then the sections clap knows nothing of.
pub fn write_man_page(version: &str, out: &mut dyn Write) -> io::Result<()> {
    let man = Man::new(cli::command())
        .source(format!("force-bind {version}"))
        .manual("User Commands");
    man.render_title(out)?;
    man.render_name_section(out)?;
    // clap's synopsis lists every flag and shows PROGRAM as optional (it is, with -V).
    out.write_all(SYNOPSIS.as_bytes())?;
    man.render_description_section(out)?;
    out.write_all(DESCRIPTION_MORE.as_bytes())?;
    man.render_options_section(out)?;
    out.write_all(SECTIONS.as_bytes())
}

/// Writes the completion script for `shell`.
pub fn write_completions(shell: Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut cli::command(), "force-bind", out);
}

const SYNOPSIS: &str = r#".SH SYNOPSIS
.B force-bind
[\fIOPTIONS\fR] \fIPROGRAM\fR [\fIARGS\fR...]
.br
.B force-bind \-V
.br
.B force-bind agent
[\fIOPTIONS\fR] [\fIRULES\fR...]
"#;

/// Appended to the DESCRIPTION section (clap's `about` is one sentence).
const DESCRIPTION_MORE: &str = r#".PP
Options stop at the first non-option, so
.B "force-bind -d nc -l 0.0.0.0 5000"
needs no
.BR \-\- .
The program runs under a seccomp filter that traps
.BR bind (2)
only (and
.BR listen (2)
with
.BR \-L );
every other system call runs at full speed.
Two engines carry the policy out: \fBnotify\fR (seccomp user notification,
Linux 5.9 and later) and \fBptrace\fR (seccomp RET_TRACE, any kernel with
seccomp filters).
Both judge the bytes that are bound: force\-bind binds its own copy of the
program's socket, or (ptrace before Linux 5.6) points the call at a copy of the
checked address, so another thread cannot change the address after the check.
.B "\-\-engine auto"
picks \fBbpf\fR (cgroup bind programs run by the kernel inside
.BR bind (2))
when force\-bind is root, the cgroup2 mount is writable, the kernel has clone3
with CLONE_INTO_CGROUP (Linux 5.7), the policy compiles into the programs and
no bind events are wanted (\fB\-v\fR, \fB\-\-json\fR, watch mode); else
notify when the kernel has everything it needs, else ptrace.
\fB\-v\fR says why; \fB\-V\fR lists the engines.
"#;

/// RULES to SEE ALSO. Raw roff: `\-` is a minus sign (a plain `-` may be typeset as
/// a hyphen, which breaks copy and paste of options).
const SECTIONS: &str = r#".SH RULES
Rules come from \fB\-b\fR, \fB\-m\fR and \fB\-d\fR and are tried
\fIlast\-given first\fR: put the general policy first and override it with
later rules.
A bind that no rule matches goes through unchanged.
.PP
\fIMATCH\fR is \fB:\fIPORT\fR, a port range \fB:\fIFIRST\fB\-\fILAST\fR,
\fIIP\fR[\fB:\fIPORT\fR][\fB/\fIPREFIX\fR],
\fB[\fIIPv6\fB]\fR[\fB:\fIPORT\fR][\fB/\fIPREFIX\fR] or \fB*\fR.
\fIPORT\fR may be \fB*\fR; without \fIPREFIX\fR the whole address must match.
.PP
\fIADDR\fR is one of:
.TP
\fIIP\fB:\fIPORT\fR, \fB[\fIIPv6\fB]:\fIPORT\fR
bind there instead;
.TP
\fIIP\fR, \fIIP\fB:*\fR, \fB[\fIIPv6\fB]\fR
bind to \fIIP\fR with the port the program asked for;
.TP
\fBfd=\fIN\fR, \fBfd\-\fIN\fR
put inherited descriptor \fIN\fR in place of the program's socket (no bind);
.TP
\fBsd=\fIN\fR, \fBsd\-\fIN\fR
the \fIN\fR\-th socket of systemd socket activation, that is fd 3+\fIN\fR;
.TP
\fBsd=\fINAME\fR
the activated socket that \fBLISTEN_FDNAMES\fR calls \fINAME\fR
(\fBFileDescriptorName=\fR in the .socket unit);
.TP
\fBallow\fR
let the bind through as asked;
.TP
\fBdeny\fR
fail it with \fBEPERM\fR (\fB\-d\fR is \fB\-m\ '*=deny'\fR).
.PP
An IPv4 rule also reaches an AF_INET6 socket that is not \fBIPV6_V6ONLY\fR
when it binds \fB[::]\fR or a v4\-mapped address, and rewrites it to the mapped
form (\fB[::ffff:127.0.0.1]\fR).
Rules of the socket's own family are tried first.
A rewrite to an address the socket cannot take is skipped and the next rule
is tried.
AF_UNIX and every other family are never touched.
.SH ENVIRONMENT
.TP
.BR LISTEN_PID ", " LISTEN_FDS ", " LISTEN_FDNAMES
systemd socket activation (\fBsd_listen_fds\fR(3)).
The passed sockets are used only when \fBLISTEN_PID\fR is force\-bind's own
PID.
All three are removed from the program's environment unless
\fB\-\-pass\-listen\-fds\fR is given, which keeps them with \fBLISTEN_PID\fR set
to the program's PID.
.SH EXIT STATUS
The program's own status; if it died of a signal, force\-bind dies of the same
signal.
.TP
.B 2
bad command line or rule (one line on standard error naming it);
.TP
.B 125
force\-bind itself failed;
.TP
.B 126
\fIPROGRAM\fR is not executable;
.TP
.B 127
\fIPROGRAM\fR was not found.
.PP
SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to force\-bind are
passed to the program.
.SH EXAMPLES
Serve on 127.0.0.2:8000 whatever address the server asks for:
.PP
.RS
.EX
force\-bind \-v \-b 127.0.0.2 python3 \-m http.server 8000 \-\-bind 0.0.0.0
.EE
.RE
.PP
IPv6 binds of port 80 go to [::1]:8080; every other bind is denied:
.PP
.RS
.EX
force\-bind \-d \-m '[::]:80/0=[::1]:8080' PROGRAM
.EE
.RE
.PP
Only port 8000 may be bound:
.PP
.RS
.EX
force\-bind \-d \-m :8000=allow PROGRAM
.EE
.RE
.PP
Hand a program that knows nothing of socket activation the socket systemd
opened (in a unit: \fBExecStart=force\-bind \-L \-m :8000=sd=web PROGRAM\fR
with \fBFileDescriptorName=web\fR in the .socket unit):
.PP
.RS
.EX
systemd\-socket\-activate \-l 8000 \-\-fdname=web \e
    force\-bind \-L \-m :8000=sd=web PROGRAM
.EE
.RE
.SH CONTAINERS
.B "force\-bind agent"
is the seccomp listener of OCI runtimes (runc 1.1 and later, crun 0.19 and
later; Docker and Podman through them): a container whose seccomp profile sends
.BR bind ,
.B listen
and
.B io_uring_setup
to SCMP_ACT_NOTIFY with the agent's
.B listenerPath
(default /run/force\-bind/agent.sock) has its binds judged by the agent, with
the rules given after
.B agent
followed by those of the profile's
.BR listenerMetadata .
.B "force\-bind agent \-\-profile [\-\-base FILE] [\-\-metadata RULES]"
prints that profile;
.B "force\-bind agent \-h"
says more.
.SH SECURITY
If force\-bind dies, the program's trapped binds fail (notify engine) or the
program is killed (ptrace engine).
The filter sets \fBno_new_privs\fR.
The README's security model lists what is enforced and what is not.
.SH SEE ALSO
.BR bind (2),
.BR seccomp (2),
.BR seccomp_unotify (2),
.BR ptrace (2),
.BR sd_listen_fds (3),
.BR systemd.socket (5),
.BR systemd\-socket\-activate (1)
"#;
