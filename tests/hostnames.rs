//! tests/hostnames.rs: host names in rules (`-b NAME`, `-m MATCH=NAME:PORT`, a MATCH
//! that is a name), resolved the way the system resolves them. Each test runs in
//! private mount and network namespaces (`unshare --mount --net`, root only) with its
//! own /etc/hosts, /etc/nsswitch.conf (`hosts: files dns`) and /etc/resolv.conf
//! (`nameserver 127.0.0.1`) bind-mounted over the host's; names that /etc/hosts lacks
//! are answered by a dnsmasq started in the same namespaces.

mod common;

use common::servers::*;
use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// web.internal's first address is on no interface (TEST-NET-1, RFC 5737): binding
/// it fails with EADDRNOTAVAIL, so force-bind must take the next one.
const HOSTS: &str = "\
127.0.0.1 localhost
192.0.2.10 web.internal
127.0.0.3 web.internal
::1 web.internal
127.0.0.4 other.internal
";
const NSSWITCH: &str = "hosts: files dns\n";
/// One short try: a lookup that reaches no DNS server fails at once.
const RESOLV_CONF: &str = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n";

/// The private /etc files, written once per test process: (file, what it covers).
fn etc_files() -> &'static [(PathBuf, &'static str)] {
    static FILES: OnceLock<Vec<(PathBuf, &'static str)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tmp_path("etc");
        fs::create_dir_all(&dir).expect("create etc dir");
        [
            ("hosts", HOSTS),
            ("nsswitch.conf", NSSWITCH),
            ("resolv.conf", RESOLV_CONF),
        ]
        .into_iter()
        .map(|(name, text)| {
            let file = dir.join(name);
            fs::write(&file, text).expect("write etc file");
            let over: &'static str = Box::leak(format!("/etc/{name}").into_boxed_str());
            (file, over)
        })
        .collect()
    })
}

/// `cmd` in new mount and network namespaces with the private /etc files.
fn with_private_etc(setup: &[&str], cmd: Command) -> Command {
    let mounts: Vec<(&Path, &str)> = etc_files().iter().map(|(f, o)| (f.as_path(), *o)).collect();
    in_new_namespaces(setup, &mounts, cmd)
}

/// Runs `cmd` to completion with the private /etc files.
fn run_with_private_etc(cmd: Command) -> Finished {
    run(with_private_etc(&[], cmd))
}

engine_tests! {
    /// The bpf engine, which cannot try several addresses in order, refuses such a
    /// name by design: exit 2, one line.
    fn b_name_takes_its_first_local_address(engine: Engine) {
        let Some(_) = require(&[]) else { return };
        let p = free_port();
        let p_s = p.to_string();
        let args = ["-v", "-b", "web.internal", python3(), "-m", "http.server", &p_s, "--bind", "0.0.0.0"];
        if engine == Engine::Bpf {
            let f = run(with_private_etc(&[], force_bind(engine, &args)));
            assert_bpf_refuses(&f);
            assert!(f.stderr.contains("cannot try several in order"), "{f}");
            return;
        }
        let mut server = Proc::spawn(with_private_etc(&[], force_bind(engine, &args)));
        let want = BTreeSet::from([tcp(v4("127.0.0.3", p))]);
        wait_listeners(&mut server, &[p], &want);
        let got = in_netns_of(server.pid(), || http_get_body(v4("127.0.0.3", p))).and_then(|r| r);
        assert!(matches!(got, Ok((200, _))), "{got:?}\n{}", server.context());
        assert_no_other_listeners(&server, &[p]);
        // -v names the address the name stood for.
        assert!(server.wait_stderr(&format!("127.0.0.3:{p}"), WAIT), "{}", server.context());
        let f = server.kill();
        assert!(!f.stderr.contains("panicked"), "{f}");
    }

    fn m_rewrites_to_a_name_and_port(engine: Engine) {
        let Some(_) = require(&[]) else { return };
        let (p, q) = (free_port(), free_port());
        let (p_s, rule) = (p.to_string(), format!(":{p}=other.internal:{q}"));
        let f = run_with_private_etc(force_bind(engine, &["-m", &rule, bindprobe(), "--port", &p_s]));
        assert_eq!(f.bound(), vec![v4("127.0.0.4", q)], "{f}");
        f.assert_success();
    }

    fn unknown_name_is_a_command_line_error(engine: Engine) {
        let Some(_) = require(&[]) else { return };
        let f = run_with_private_etc(force_bind(engine, &["-b", "nosuch.internal", "sh", "-c", "echo started"]));
        assert_eq!(f.code(), Some(2), "{f}");
        let lines = f.stderr_lines();
        assert!(lines.len() == 1 && lines[0].contains("nosuch.internal"), "one line naming it:\n{f}");
        assert!(!f.stdout.contains("started"), "the program ran\n{f}");
    }

    fn match_by_name_allows_its_addresses(engine: Engine) {
        let Some(_) = require(&[]) else { return };
        let p = free_port();
        let p_s = p.to_string();
        let probe = |addr: &str| {
            let args = ["-d", "-m", "web.internal=allow", bindprobe(), "--addr", addr, "--port", &p_s];
            run_with_private_etc(force_bind(engine, &args))
        };
        let allowed = probe("127.0.0.3");
        assert_eq!(allowed.bound(), vec![v4("127.0.0.3", p)], "{allowed}");
        allowed.assert_success();
        let denied = probe("127.0.0.5");
        assert_eq!(denied.probe(), vec![Probe::Error(libc::EPERM)], "{denied}");
        assert_eq!(denied.code(), Some(1), "{denied}");
    }

    fn b_name_resolved_by_dns(engine: Engine) {
        let Some(paths) = require(&["dnsmasq"]) else { return };
        // The DNS server first, in new namespaces; force-bind then joins them.
        let dns_args = dnsmasq_args(&paths[0], 53, &["/dns.internal/127.0.0.6"]);
        let dns_args: Vec<&str> = dns_args.iter().map(String::as_str).collect();
        let mut dns = Proc::spawn(with_private_etc(&[], command(dns_args[0], &dns_args[1..])));
        let serving = udp(v4("0.0.0.0", 53));
        let up = wait_until(WAIT, || {
            dns.is_running() && listeners_split(dns.pid(), &[53]).0.contains(&serving)
        });
        assert!(up, "dnsmasq does not serve {serving:?}\n{}", dns.context());
        let p = free_port();
        let p_s = p.to_string();
        let cmd = force_bind(engine, &["-b", "dns.internal", bindprobe(), "--port", &p_s]);
        let f = run(in_namespaces_of(dns.pid(), true, cmd));
        assert_eq!(f.bound(), vec![v4("127.0.0.6", p)], "{f}\n--- dnsmasq ---\n{}", dns.context());
        f.assert_success();
    }
}
