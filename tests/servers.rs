//! tests/servers.rs: real servers under force-bind, each in a network namespace of its
//! own, with the rules a user would give them; what the kernel bound is read back
//! from the namespace's /proc/PID/net/{tcp,tcp6,udp,udp6} and every expected address
//! is asked a real question (HTTP, memcached `version`, a DNS query over UDP and TCP).
//!
//! The servers bind differently, which is the point: nginx binds `0.0.0.0` and a
//! `[::]` socket with IPV6_V6ONLY, memcached and dnsmasq bind the wildcard of both
//! families (TCP and UDP) with IPV6_V6ONLY on IPv6, node binds one dual-stack `[::]`
//! socket, and a static Go binary first probes IPv6 with throw-away binds of
//! `[::1]:0` and `[::ffff:127.0.0.1]:0` and then listens on a dual-stack `[::]`.
//!
//! The rule cases, P the server's port and Q another one:
//!   a. `-b 127.0.0.2 -b [::1]`: each family to its own address, port kept;
//!   b. `-b [::1]:P` alone: only IPv6 is moved;
//!   c. `-b 127.0.0.2:P` alone: only IPv4, which reaches a dual-stack socket;
//!   d. the README's `-d -m '[::]:P/0=[::1]:Q'`: IPv6 moved to Q, the rest denied;
//!   e. socket activation of one socket per family, `-L -m :P=sd=NAME`: force-bind
//!      picks the passed socket whose family and type match each bind.
//! Only sockets on P and Q are compared (exactly), and nothing may listen on any
//! other port; throw-away probe sockets that are bound and closed never listen.

mod common;

use common::servers::*;
use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// nginx-light, a master and two workers.
    Nginx,
    /// memcached, TCP and UDP.
    Memcached,
    /// node's http module (libuv).
    Node,
    /// dnsmasq as a DNS server, UDP and TCP.
    Dnsmasq,
    /// tests/go/gosrv, a static Go net/http server.
    Go,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// a. `-b 127.0.0.2 -b [::1]`
    EachFamily,
    /// b. `-b [::1]:P`
    V6Only,
    /// c. `-b 127.0.0.2:P`
    V4Only,
    /// d. `-d -m '[::]:P/0=[::1]:Q'` (README)
    DenyExample,
    /// e. one passed socket per family (per family and type for dnsmasq), all of one
    ///    name: `-L -m :P=sd=NAME`.
    Activated,
    /// e, by protocol (dnsmasq only): stream sockets named `dt`, datagram ones `du`,
    ///    `-L -m tcp::P=sd=dt -m udp::P=sd=du`.
    ActivatedByProtocol,
}

/// What the kernel must show, and the program do.
enum Outcome {
    /// The program keeps running with exactly `listeners` on P and Q (and none on any
    /// other port), and answers at each of `served`.
    Serves {
        listeners: Vec<Listener>,
        served: Vec<Listener>,
    },
    /// The program exits non-zero, having bound nothing on P or Q, and its error
    /// output says `says`.
    Fails { says: String },
}

const DNS_NAME: &str = "test.internal";
const DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

impl Server {
    /// The program to find (for Go, the compiler that builds gosrv).
    fn program(self) -> &'static str {
        match self {
            Server::Nginx => "nginx",
            Server::Memcached => "memcached",
            Server::Node => "node",
            Server::Dnsmasq => "dnsmasq",
            Server::Go => "go",
        }
    }

    /// The command name of the server's processes (/proc/PID/comm).
    fn comm(self) -> &'static str {
        match self {
            Server::Go => "gosrv",
            other => other.program(),
        }
    }

    /// What it serves (memcached serves no UDP when activated: `-U 0`).
    fn protos(self, case: Case) -> &'static [Proto] {
        match (self, case) {
            (Server::Memcached, Case::Activated) => &[Proto::Tcp],
            (Server::Memcached | Server::Dnsmasq, _) => &[Proto::Tcp, Proto::Udp],
            _ => &[Proto::Tcp],
        }
    }

    /// The server's command line, serving port `p`; `path` is what `program()` found.
    fn argv(self, path: &str, case: Case, p: u16) -> Vec<String> {
        match self {
            Server::Nginx => {
                let dir = tmp_path("nginx");
                fs::create_dir_all(&dir).expect("create nginx dir");
                let conf = dir.join("nginx.conf");
                fs::write(&conf, nginx_conf(&dir, p)).expect("write nginx.conf");
                let (dir, conf) = (dir.to_str().unwrap(), conf.to_str().unwrap());
                // -e: the error log until the configuration's error_log is read.
                [path, "-p", dir, "-e", "stderr", "-c", conf]
                    .map(String::from)
                    .to_vec()
            }
            Server::Memcached => {
                let udp = if case == Case::Activated { 0 } else { p };
                let (p, udp) = (p.to_string(), udp.to_string());
                [path, "-u", "root", "-p", &p, "-U", &udp]
                    .map(String::from)
                    .to_vec()
            }
            Server::Node => {
                let code = format!("require('http').createServer((q,s)=>s.end('ok')).listen({p})");
                vec![path.to_string(), "-e".into(), code]
            }
            Server::Dnsmasq => dnsmasq_args(path, p, &[&format!("/{DNS_NAME}/{DNS_ANSWER}")]),
            Server::Go => vec![gosrv(path).to_string(), format!(":{p}")],
        }
    }

    /// Shell commands that set up the server's network namespace.
    fn netns_setup(self) -> &'static [&'static str] {
        match self {
            // dnsmasq bound to a wildcard drops a TCP connection whose local address
            // is not an interface's own (check_dns_listeners, "Check for allowed
            // interfaces when binding the wildcard address"), and lo has only
            // 127.0.0.1/8: give it 127.0.0.2 as well, as a host that serves DNS there
            // would.
            Server::Dnsmasq => &["ip addr add 127.0.0.2/32 dev lo"],
            _ => &[],
        }
    }

    /// Asks the server at `l` a real question (from inside its namespace).
    fn answers(self, l: Listener) -> Result<(), String> {
        let addr = l.client_addr();
        match (self, l.proto) {
            (Server::Nginx | Server::Node | Server::Go, Proto::Tcp) => match http_get_body(addr)? {
                (200, body) if body.trim_end() == "ok" => Ok(()),
                other => Err(format!("GET {addr}: {other:?}")),
            },
            (Server::Memcached, Proto::Tcp) => memcached_version_tcp(addr).map(drop),
            (Server::Memcached, Proto::Udp) => memcached_version_udp(addr).map(drop),
            (Server::Dnsmasq, proto) => {
                let got = match proto {
                    Proto::Tcp => dns_lookup_tcp(addr, DNS_NAME)?,
                    Proto::Udp => dns_lookup_udp(addr, DNS_NAME)?,
                };
                if got == DNS_ANSWER {
                    Ok(())
                } else {
                    Err(format!("{DNS_NAME} is {got} at {l:?}"))
                }
            }
            (server, proto) => Err(format!("{server:?} serves no {proto:?}")),
        }
    }

    /// What the server says when its IPv4 wildcard bind gets EPERM.
    fn eperm_message(self, p: u16) -> String {
        match self {
            Server::Nginx => format!("bind() to 0.0.0.0:{p} failed (1: Operation not permitted)"),
            Server::Dnsmasq => {
                format!("failed to create listening socket for port {p}: Operation not permitted")
            }
            _ => "Operation not permitted".to_string(),
        }
    }
}

/// nginx with a master and two workers in the foreground, everything it writes in
/// `dir`, answering "ok" on port `p` of both families (`[::]` is IPV6_V6ONLY, nginx's
/// default).
fn nginx_conf(dir: &std::path::Path, p: u16) -> String {
    let d = dir.display();
    format!(
        "daemon off;
master_process on;
worker_processes 2;
user root;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {p};
        listen [::]:{p};
        location / {{ return 200 \"ok\\n\"; }}
    }}
}}
"
    )
}

/// The force-bind rules of `case`.
fn rules(server: Server, case: Case, p: u16, q: u16) -> Vec<String> {
    let name = if server == Server::Dnsmasq {
        "dns"
    } else {
        "web"
    };
    match case {
        Case::EachFamily => vec!["-b".into(), "127.0.0.2".into(), "-b".into(), "[::1]".into()],
        Case::V6Only => vec!["-b".into(), format!("[::1]:{p}")],
        Case::V4Only => vec!["-b".into(), format!("127.0.0.2:{p}")],
        Case::DenyExample => vec!["-d".into(), "-m".into(), format!("[::]:{p}/0=[::1]:{q}")],
        Case::Activated => vec!["-L".into(), "-m".into(), format!(":{p}=sd={name}")],
        Case::ActivatedByProtocol => vec![
            "-L".into(),
            "-m".into(),
            format!("tcp::{p}=sd=dt"),
            "-m".into(),
            format!("udp::{p}=sd=du"),
        ],
    }
}

/// The table of expected outcomes.
fn expected(server: Server, case: Case, p: u16, q: u16) -> Outcome {
    use Server::*;
    let on = |addrs: &[SocketAddr]| -> Vec<Listener> {
        let protos = server.protos(case);
        protos
            .iter()
            .flat_map(|&proto| addrs.iter().map(move |&addr| Listener { proto, addr }))
            .collect()
    };
    let serves = |addrs: &[SocketAddr]| Outcome::Serves {
        listeners: on(addrs),
        served: on(addrs),
    };
    let (lo4, lo6) = (v4("127.0.0.1", p), v6("::1", p));
    match (case, server) {
        (Case::EachFamily, Nginx | Memcached | Dnsmasq) => serves(&[v4("127.0.0.2", p), lo6]),
        (Case::EachFamily, Node | Go) => serves(&[lo6]),
        (Case::V6Only, Nginx | Memcached | Dnsmasq) => serves(&[v4("0.0.0.0", p), lo6]),
        // Go's IPv6 probes must not land it on 0.0.0.0.
        (Case::V6Only, Node | Go) => serves(&[lo6]),
        (Case::V4Only, Nginx | Memcached | Dnsmasq) => serves(&[v4("127.0.0.2", p), v6("::", p)]),
        (Case::V4Only, Node | Go) => serves(&[v6("::ffff:127.0.0.2", p)]),
        (Case::DenyExample, Nginx | Memcached | Dnsmasq) => Outcome::Fails {
            says: server.eperm_message(p),
        },
        (Case::DenyExample, Node | Go) => serves(&[v6("::1", q)]),
        (Case::Activated | Case::ActivatedByProtocol, Nginx | Memcached | Dnsmasq) => {
            serves(&[lo4, lo6])
        }
        // One dual-stack socket: it gets the IPv6 one; the IPv4 one stays unused.
        (Case::Activated | Case::ActivatedByProtocol, Node | Go) => Outcome::Serves {
            listeners: on(&[lo4, lo6]),
            served: on(&[lo6]),
        },
    }
}

/// force-bind (behind the engine's wrapper) with `args`, appended to `launcher`,
/// which passes it sockets.
fn after(mut launcher: Command, engine: Engine, args: &[String]) -> Command {
    launcher
        .args(engine.wrapper().iter().flatten())
        .arg(force_bind_bin())
        .args(engine.args())
        .args(args);
    launcher
}

/// The whole command of `case`: force-bind with the case's rules and the server,
/// under the socket activation of case e.
fn case_command(engine: Engine, server: Server, case: Case, path: &str, p: u16, q: u16) -> Command {
    let mut args = rules(server, case, p, q);
    args.extend(server.argv(path, case, p));
    let (lo4, lo6) = (v4("127.0.0.1", p).to_string(), v6("::1", p).to_string());
    match (case, server) {
        (Case::Activated | Case::ActivatedByProtocol, Server::Dnsmasq) => {
            // dnsmasq needs a stream and a datagram socket per family, which
            // systemd-socket-activate cannot mix.
            let names = if case == Case::Activated {
                "dns:dns:dns:dns"
            } else {
                "dt:dt:du:du"
            };
            let specs = [
                format!("tcp:{lo4}"),
                format!("tcp:{lo6}"),
                format!("udp:{lo4}"),
                format!("udp:{lo6}"),
            ];
            let mut sa_args = vec!["--names", names];
            sa_args.extend(specs.iter().map(String::as_str));
            sa_args.push("--");
            after(command(sd_activate_multi(), &sa_args), engine, &args)
        }
        (Case::Activated, _) => {
            let sa_args = ["-l", &lo4, "-l", &lo6, "--fdname=web:web"];
            after(command("systemd-socket-activate", &sa_args), engine, &args)
        }
        (Case::ActivatedByProtocol, _) => panic!("{server:?}: only dnsmasq serves both protocols"),
        _ => force_bind(engine, &args.iter().map(String::as_str).collect::<Vec<_>>()),
    }
}

/// Runs `server` under `case`'s rules in a network namespace of its own and checks
/// the outcome the table expects.
fn check(engine: Engine, server: Server, case: Case) {
    let mut needs = vec![server.program()];
    if case == Case::Activated && server != Server::Dnsmasq {
        needs.push("systemd-socket-activate");
    }
    let Some(paths) = require(&needs) else { return };
    let (p, q) = (free_port(), free_port());
    let ports = [p, q];
    let cmd = in_new_netns(
        server.netns_setup(),
        case_command(engine, server, case, &paths[0], p, q),
    );
    let mut proc = Proc::spawn(cmd);
    // dnsmasq closes every descriptor above 2 at start: a traced program can only be
    // given a socket it still has (dup2), so the ptrace engine refuses those binds,
    // and says why; the notify engine installs the socket itself (NOTIF_ADDFD).
    let activated = matches!(case, Case::Activated | Case::ActivatedByProtocol);
    if server == Server::Dnsmasq && activated && engine != Engine::Notify {
        let f = proc.finish(WAIT);
        assert!(
            matches!(f.code(), Some(c) if c != 0),
            "expected a failure\n{f}"
        );
        assert!(
            f.stderr.contains("cannot hand the program inherited fd")
                && f.stderr.contains("denying the bind"),
            "the ptrace engine's limit is not said\n{f}"
        );
        return;
    }
    match expected(server, case, p, q) {
        Outcome::Serves { listeners, served } => {
            let want: BTreeSet<Listener> = listeners.into_iter().collect();
            wait_listeners(&mut proc, &ports, &want);
            for &l in &served {
                // For case e the first request is what starts force-bind and the server.
                let answer = in_netns_of(proc.pid(), || server.answers(l)).and_then(|r| r);
                if let Err(e) = answer {
                    let held = describe_holders(proc.pid(), l);
                    panic!("{l:?}: {e}\n{held}\n{}", proc.context());
                }
            }
            let now = listeners_split(proc.pid(), &ports).0;
            assert_eq!(
                now,
                want,
                "listeners on {ports:?} after the requests\n{}",
                proc.context()
            );
            assert_no_other_listeners(&proc, &ports);
            // The socket that answered is the server's own descriptor (for case e: the
            // passed socket was put in place of the server's).
            for &l in &served {
                let held = inode_of(proc.pid(), l).map(|inode| holders(proc.pid(), inode));
                assert!(
                    held.iter().flatten().any(|(_, c)| c == server.comm()),
                    "{l:?} is not held by {}: {held:?}\n{}",
                    server.comm(),
                    proc.context()
                );
            }
            assert!(proc.is_running(), "{}", proc.context());
            let f = proc.kill();
            assert!(!f.stderr.contains("panicked"), "{f}");
        }
        Outcome::Fails { says } => {
            let (f, seen) = watch_until_exit(proc, &ports);
            assert!(
                matches!(f.code(), Some(c) if c != 0),
                "expected a non-zero exit status\n{f}"
            );
            assert_eq!(seen, BTreeSet::new(), "bound while it ran\n{f}");
            assert!(
                f.stderr.contains(&says),
                "stderr does not say {says:?}\n{f}"
            );
            assert!(!f.stderr.contains("panicked"), "{f}");
        }
    }
}

engine_tests! {
    fn nginx_each_family(engine: Engine) { check(engine, Server::Nginx, Case::EachFamily) }
    fn nginx_v6_rule_only(engine: Engine) { check(engine, Server::Nginx, Case::V6Only) }
    fn nginx_v4_rule_only(engine: Engine) { check(engine, Server::Nginx, Case::V4Only) }
    fn nginx_readme_deny_example(engine: Engine) { check(engine, Server::Nginx, Case::DenyExample) }
    /// Not for Bpf: it refuses sd= replacement by design (exit 2, one line:
    /// tests/bpf.rs asserts it), and here force-bind starts only at the first request.
    fn nginx_socket_activated(engine: Engine) not for Bpf { check(engine, Server::Nginx, Case::Activated) }

    fn memcached_each_family(engine: Engine) { check(engine, Server::Memcached, Case::EachFamily) }
    fn memcached_v6_rule_only(engine: Engine) { check(engine, Server::Memcached, Case::V6Only) }
    fn memcached_v4_rule_only(engine: Engine) { check(engine, Server::Memcached, Case::V4Only) }
    fn memcached_readme_deny_example(engine: Engine) {
        check(engine, Server::Memcached, Case::DenyExample)
    }
    /// Not for Bpf: it refuses sd= replacement by design (exit 2, one line:
    /// tests/bpf.rs asserts it), and here force-bind starts only at the first request.
    fn memcached_socket_activated(engine: Engine) not for Bpf {
        check(engine, Server::Memcached, Case::Activated)
    }

    fn node_each_family(engine: Engine) { check(engine, Server::Node, Case::EachFamily) }
    fn node_v6_rule_only(engine: Engine) { check(engine, Server::Node, Case::V6Only) }
    fn node_v4_rule_only(engine: Engine) { check(engine, Server::Node, Case::V4Only) }
    fn node_readme_deny_example(engine: Engine) { check(engine, Server::Node, Case::DenyExample) }
    /// Not for Bpf: it refuses sd= replacement by design (exit 2, one line:
    /// tests/bpf.rs asserts it), and here force-bind starts only at the first request.
    fn node_socket_activated(engine: Engine) not for Bpf { check(engine, Server::Node, Case::Activated) }

    fn dnsmasq_each_family(engine: Engine) { check(engine, Server::Dnsmasq, Case::EachFamily) }
    fn dnsmasq_v6_rule_only(engine: Engine) { check(engine, Server::Dnsmasq, Case::V6Only) }
    fn dnsmasq_v4_rule_only(engine: Engine) { check(engine, Server::Dnsmasq, Case::V4Only) }
    fn dnsmasq_readme_deny_example(engine: Engine) {
        check(engine, Server::Dnsmasq, Case::DenyExample)
    }
    /// Not for Bpf: it refuses sd= replacement by design (exit 2, one line:
    /// tests/bpf.rs asserts it), and here force-bind starts only at the first request.
    fn dnsmasq_socket_activated(engine: Engine) not for Bpf { check(engine, Server::Dnsmasq, Case::Activated) }
    /// Not for Bpf: it refuses sd= replacement by design (exit 2, one line:
    /// tests/bpf.rs asserts it), and here force-bind starts only at the first request.
    fn dnsmasq_socket_activated_by_protocol(engine: Engine) not for Bpf {
        check(engine, Server::Dnsmasq, Case::ActivatedByProtocol)
    }

    fn go_each_family(engine: Engine) { check(engine, Server::Go, Case::EachFamily) }
    fn go_v6_rule_only(engine: Engine) { check(engine, Server::Go, Case::V6Only) }
    fn go_v4_rule_only(engine: Engine) { check(engine, Server::Go, Case::V4Only) }
    fn go_readme_deny_example(engine: Engine) { check(engine, Server::Go, Case::DenyExample) }
    /// Not for Bpf: it refuses sd= replacement by design (exit 2, one line:
    /// tests/bpf.rs asserts it), and here force-bind starts only at the first request.
    fn go_socket_activated(engine: Engine) not for Bpf { check(engine, Server::Go, Case::Activated) }
}
