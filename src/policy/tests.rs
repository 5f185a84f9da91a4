// policy/tests.rs: the decision table. Each row is rules, a request, and what must
// happen; the rows for real servers (Go, nginx, node, dnsmasq) are the ones the
// integration tests in tests/servers.rs run for real.

use super::*;
use crate::rule::{deny_all, parse_bind_with, parse_match_with};

fn hosts(name: &str) -> Result<Vec<IpAddr>, String> {
    let ips: &[&str] = match name {
        "web.internal" => &["192.0.2.10", "127.0.0.3", "::1"],
        "v4.internal" => &["127.0.0.4"],
        _ => return Err(format!("no address for '{name}'")),
    };
    Ok(ips.iter().map(|s| s.parse().unwrap()).collect())
}

fn stream(fd: RawFd, domain: i32) -> InheritedSocket {
    InheritedSocket {
        fd,
        domain,
        kind: SocketKind::TCP,
    }
}

fn dgram(fd: RawFd, domain: i32) -> InheritedSocket {
    InheritedSocket {
        fd,
        domain,
        kind: SocketKind::UDP,
    }
}

/// Inherited: fd 3 IPv4 stream "web", fd 4 IPv6 stream "web", fd 5 IPv4 datagram
/// "dns", fd 6 IPv6 datagram "dns", fd 7 IPv4 stream "admin", and fd 9 (not
/// systemd's) an IPv4 stream.
fn policy(rules: &[&str]) -> Policy {
    let rules = rules
        .iter()
        .map(|r| match r.split_once(' ') {
            Some(("-b", a)) => parse_bind_with(a, &mut hosts).unwrap(),
            Some(("-m", a)) => parse_match_with(a, &mut hosts).unwrap(),
            None if *r == "-d" => deny_all(),
            _ => panic!("bad test rule {r}"),
        })
        .collect();
    Policy {
        rules,
        inherited: Inherited {
            sockets: vec![
                stream(3, libc::AF_INET),
                stream(4, libc::AF_INET6),
                dgram(5, libc::AF_INET),
                dgram(6, libc::AF_INET6),
                stream(7, libc::AF_INET),
                stream(9, libc::AF_INET),
            ],
            systemd_count: 5,
            systemd_names: ["web", "web", "dns", "dns", "admin"]
                .map(String::from)
                .into(),
        },
        skip_listen_on_replaced: false,
        allow_io_uring: false,
    }
}

/// A request: "tcp 0.0.0.0:80", "udp [::]:53 dual", "listen [::]:0 dual".
fn request(s: &str) -> BindRequest {
    let mut words = s.split_whitespace();
    let (kind, purpose) = match words.next().unwrap() {
        "tcp" => (SocketKind::TCP, Purpose::Bind),
        "udp" => (SocketKind::UDP, Purpose::Bind),
        "listen" => (SocketKind::TCP, Purpose::Listen),
        "raw" => (
            SocketKind {
                sock_type: libc::SOCK_RAW,
                protocol: libc::IPPROTO_UDP,
            },
            Purpose::Bind,
        ),
        other => panic!("bad kind {other}"),
    };
    let addr = words.next().unwrap().parse().unwrap();
    let dual_stack = match words.next() {
        Some("dual") => true,
        None => false,
        Some(other) => panic!("bad flag {other}"),
    };
    BindRequest {
        addr,
        dual_stack,
        kind,
        purpose,
    }
}

/// What a verdict comes to, in a row's words: "allow", "deny", "fd=4",
/// "listen-judged", or the addresses to try, space-separated.
fn outcome(v: &Verdict) -> String {
    match (&v.decision, v.judge_listen) {
        (Decision::Allow, true) => "listen-judged".into(),
        (Decision::Allow, false) => "allow".into(),
        (Decision::Deny(_), _) => "deny".into(),
        (Decision::ReplaceWithFd(fd), _) => format!("fd={fd}"),
        (Decision::Rewrite(to), _) => to
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[test]
fn decides_table() {
    // (rules, request, outcome, the rule that decided)
    type Row<'a> = (&'a [&'a str], &'a str, &'a str, Option<&'a str>);
    #[rustfmt::skip]
    let rows: &[Row] = &[
        // No rule: everything goes through.
        (&[], "tcp 0.0.0.0:80", "allow", None),
        // -b rewrites its own family only, keeping or replacing the port.
        (&["-b 127.0.0.1:8080"], "tcp 0.0.0.0:80", "127.0.0.1:8080", Some("-b 127.0.0.1:8080")),
        (&["-b 127.0.0.1"], "tcp 0.0.0.0:80", "127.0.0.1:80", Some("-b 127.0.0.1")),
        (&["-b 127.0.0.1:*"], "tcp 10.0.0.1:0", "127.0.0.1:0", Some("-b 127.0.0.1:*")),
        (&["-b 127.0.0.1:8080"], "tcp [::1]:80", "allow", None),
        (&["-b [::1]:8081"], "tcp 0.0.0.0:80", "allow", None),
        (&["-b [::1]:8081"], "tcp [::]:80 dual", "[::1]:8081", Some("-b [::1]:8081")),
        // A dual-stack [::] meets the IPv4 rules as 0.0.0.0, in mapped form; a V6ONLY
        // one does not.
        (&["-b 127.0.0.1:8080"], "tcp [::]:80 dual", "[::ffff:127.0.0.1]:8080", Some("-b 127.0.0.1:8080")),
        (&["-b 127.0.0.1:8080"], "tcp [::]:80", "allow", None),
        (&["-b 127.0.0.1:8080", "-b [::1]:8081"], "tcp [::]:80 dual", "[::1]:8081", Some("-b [::1]:8081")),
        (&["-b [::1]:8081", "-b 127.0.0.1:8080"], "tcp [::]:80 dual", "[::1]:8081", Some("-b [::1]:8081")),
        (&["-d", "-b 127.0.0.1:8080"], "tcp [::]:80 dual", "deny", Some("-d")),
        (&["-b 127.0.0.1"], "tcp [::2]:80 dual", "allow", None),
        // Family-less rules with an IPv4 address reach a dual-stack [::] too.
        (&["-m :80=127.0.0.1:8080"], "tcp [::]:80 dual", "[::ffff:127.0.0.1]:8080", Some("-m :80=127.0.0.1:8080")),
        (&["-m :80=127.0.0.1:8080"], "tcp [::]:80", "allow", None),
        // A v4-mapped bind is an IPv4 bind, whatever IPV6_V6ONLY says: IPv4 and
        // family-less rules reach it, IPv6 ones never.
        (&["-b 127.0.0.1"], "tcp [::ffff:10.0.0.1]:81 dual", "[::ffff:127.0.0.1]:81", Some("-b 127.0.0.1")),
        (&["-b 127.0.0.1"], "tcp [::ffff:10.0.0.1]:81", "[::ffff:127.0.0.1]:81", Some("-b 127.0.0.1")),
        (&["-m 10.0.0.0:81/8=127.0.0.9"], "tcp [::ffff:10.0.0.1]:81", "[::ffff:127.0.0.9]:81", Some("-m 10.0.0.0:81/8=127.0.0.9")),
        (&["-b [::1]"], "tcp [::ffff:127.0.0.1]:80 dual", "allow", None),
        (&["-b [::1]", "-b 127.0.0.2"], "tcp [::ffff:127.0.0.1]:80 dual", "[::ffff:127.0.0.2]:80", Some("-b 127.0.0.2")),
        (&["-b 127.0.0.2", "-b [::1]"], "tcp [::ffff:127.0.0.1]:80 dual", "[::ffff:127.0.0.2]:80", Some("-b 127.0.0.2")),
        (&["-m :80=[::1]:8080"], "tcp [::ffff:127.0.0.1]:80", "allow", None),
        (&["-m [::ffff:127.0.0.0]/104=deny"], "tcp [::ffff:127.0.0.1]:80", "deny", Some("-m [::ffff:127.0.0.0]/104=deny")),
        (&["-m [::ffff:127.0.0.0]/104=deny"], "tcp 127.0.0.1:80", "deny", Some("-m [::ffff:127.0.0.0]/104=deny")),
        (&["-m [::]/0=deny"], "tcp [::ffff:127.0.0.1]:80", "allow", None),
        (&["-d"], "tcp [::ffff:127.0.0.1]:80", "deny", Some("-d")),
        // Port 0 is not a service bind: the address is rewritten, the port stays 0...
        (&["-b [::1]:8098"], "tcp [::1]:0", "[::1]:0", Some("-b [::1]:8098")),
        (&["-b 127.0.0.2:8098"], "tcp [::ffff:127.0.0.1]:0 dual", "[::ffff:127.0.0.2]:0", Some("-b 127.0.0.2:8098")),
        (&["-m 0.0.0.0/0=127.0.0.1:80"], "udp 0.0.0.0:0", "127.0.0.1:0", Some("-m 0.0.0.0/0=127.0.0.1:80")),
        // ... unless the MATCH names port 0.
        (&["-m :0=127.0.0.1:8080"], "tcp 0.0.0.0:0", "127.0.0.1:8080", Some("-m :0=127.0.0.1:8080")),
        (&["-m 0.0.0.0:0-10/0=127.0.0.1:9"], "tcp 0.0.0.0:0", "127.0.0.1:9", Some("-m 0.0.0.0:0-10/0=127.0.0.1:9")),
        // A port-0 bind is not denied (its listen() is judged), unless port 0 is named.
        (&["-d"], "tcp [::1]:0", "listen-judged", Some("-d")),
        (&["-d", "-m [::]:80/0=[::1]:8080"], "tcp [::1]:0", "listen-judged", Some("-d")),
        (&["-d", "-m [::]:80/0=[::1]:8080"], "tcp [::ffff:127.0.0.1]:0 dual", "listen-judged", Some("-d")),
        (&["-m :0=deny"], "tcp 0.0.0.0:0", "deny", Some("-m :0=deny")),
        (&["-m :80=deny"], "tcp 0.0.0.0:0", "allow", None),
        (&["-d", "-m 127.0.0.1=allow"], "tcp 127.0.0.1:0", "allow", Some("-m 127.0.0.1=allow")),
        // ... and only for protocols with ports: a raw socket's bind is its address.
        (&["-d"], "raw 198.51.100.7:0", "deny", Some("-d")),
        // ... nor replaced by an inherited socket.
        (&["-b sd=0"], "tcp 0.0.0.0:0", "allow", None),
        (&["-b sd=0"], "tcp 0.0.0.0:80", "fd=3", Some("-b sd=0")),
        (&["-m :0=sd=0"], "tcp 0.0.0.0:0", "fd=3", Some("-m :0=sd=0")),
        // The implicit bind of listen() is a service bind.
        (&["-d"], "listen 0.0.0.0:0", "deny", Some("-d")),
        (&["-b 127.0.0.1:8080"], "listen 0.0.0.0:0", "127.0.0.1:8080", Some("-b 127.0.0.1:8080")),
        (&["-b 127.0.0.1"], "listen [::]:0 dual", "[::ffff:127.0.0.1]:0", Some("-b 127.0.0.1")),
        // Last-given first: the general policy goes first.
        (&["-d", "-m :80=allow"], "tcp 0.0.0.0:80", "allow", Some("-m :80=allow")),
        (&["-d", "-m :80=allow"], "tcp [::]:80", "allow", Some("-m :80=allow")),
        (&["-d", "-m :80=allow"], "tcp 0.0.0.0:81", "deny", Some("-d")),
        (&["-m :80=allow", "-d"], "tcp 0.0.0.0:80", "deny", Some("-d")),
        (&["-d", "-b 127.0.0.1:8080"], "tcp 0.0.0.0:80", "127.0.0.1:8080", Some("-b 127.0.0.1:8080")),
        (&["-d", "-b 127.0.0.1:8080"], "tcp [::1]:80", "deny", Some("-d")),
        // The C README's examples.
        (&["-m 0.0.0.0:80/0=127.0.0.1:8080"], "tcp 192.0.2.1:80", "127.0.0.1:8080", Some("-m 0.0.0.0:80/0=127.0.0.1:8080")),
        (&["-m 0.0.0.0:80/0=127.0.0.1:8080"], "tcp 192.0.2.1:81", "allow", None),
        (&["-m 0.0.0.0:80/0=127.0.0.1:8080"], "tcp [::]:80", "allow", None),
        (&["-m 0.0.0.0:80/0=127.0.0.1:8080"], "tcp [::]:80 dual", "[::ffff:127.0.0.1]:8080", Some("-m 0.0.0.0:80/0=127.0.0.1:8080")),
        (&["-d", "-m [::]:80/0=[::1]:8080"], "tcp [2001:db8::1]:80", "[::1]:8080", Some("-m [::]:80/0=[::1]:8080")),
        (&["-d", "-m [::]:80/0=[::1]:8080"], "tcp [::]:80 dual", "[::1]:8080", Some("-m [::]:80/0=[::1]:8080")),
        (&["-d", "-m [::]:80/0=[::1]:8080"], "tcp 0.0.0.0:80", "deny", Some("-d")),
        // Prefixes: the mask applies to both addresses.
        (&["-m 10.0.0.0:80/8=deny"], "tcp 10.255.0.1:80", "deny", Some("-m 10.0.0.0:80/8=deny")),
        (&["-m 10.0.0.0:80/8=deny"], "tcp 11.0.0.1:80", "allow", None),
        (&["-m 10.1.2.3:80=deny"], "tcp 10.1.2.4:80", "allow", None),
        (&["-m [fd00::]/8=deny"], "tcp [fdff::1]:1", "deny", Some("-m [fd00::]/8=deny")),
        (&["-m [fd00::]/8=deny"], "tcp [fe00::1]:1", "allow", None),
        // Port ranges, inclusive.
        (&["-m :8000-8099=deny"], "tcp 0.0.0.0:8000", "deny", Some("-m :8000-8099=deny")),
        (&["-m :8000-8099=deny"], "tcp [::]:8099", "deny", Some("-m :8000-8099=deny")),
        (&["-m :8000-8099=deny"], "tcp 0.0.0.0:8100", "allow", None),
        (&["-m :8000-8099=deny"], "tcp 0.0.0.0:7999", "allow", None),
        // A rule whose address the socket cannot take is skipped, not forced.
        (&["-m :80=127.0.0.1:8080", "-m :80=[::1]:8080"], "tcp 0.0.0.0:80", "127.0.0.1:8080", Some("-m :80=127.0.0.1:8080")),
        (&["-m :80=127.0.0.1:8080", "-m :80=[::1]:8080"], "tcp [::]:80", "[::1]:8080", Some("-m :80=[::1]:8080")),
        (&["-m :80=[::1]:8080"], "tcp 0.0.0.0:80", "allow", None),
        // Protocols.
        (&["-m tcp::53=deny"], "tcp 0.0.0.0:53", "deny", Some("-m tcp::53=deny")),
        (&["-m tcp::53=deny"], "udp 0.0.0.0:53", "allow", None),
        (&["-m udp:*=127.0.0.5"], "udp [::ffff:0.0.0.0]:53", "[::ffff:127.0.0.5]:53", Some("-m udp:*=127.0.0.5")),
        (&["-b udp:127.0.0.5"], "tcp 0.0.0.0:53", "allow", None),
        // Inherited sockets, by number, systemd index and name.
        (&["-m :80=fd=9"], "tcp 0.0.0.0:80", "fd=9", Some("-m :80=fd=9")),
        (&["-m :80=sd=1"], "tcp [::]:80 dual", "fd=4", Some("-m :80=sd=1")),
        (&["-m :80=sd-4"], "tcp 0.0.0.0:80", "fd=7", Some("-m :80=sd-4")),
        (&["-m :80=sd=admin"], "tcp 0.0.0.0:80", "fd=7", Some("-m :80=sd=admin")),
        (&["-b fd=7"], "tcp 0.0.0.0:80", "fd=7", Some("-b fd=7")),
        // One name for a socket per family: each bind gets its own family's, and its
        // own type's (dnsmasq: TCP and UDP on one address).
        (&["-m :80=sd=web"], "tcp 0.0.0.0:80", "fd=3", Some("-m :80=sd=web")),
        (&["-m :80=sd=web"], "tcp [::]:80", "fd=4", Some("-m :80=sd=web")),
        (&["-m :80=sd=web"], "tcp [::]:80 dual", "fd=4", Some("-m :80=sd=web")),
        (&["-m :53=sd=dns"], "udp [::]:53", "fd=6", Some("-m :53=sd=dns")),
        (&["-m tcp::53=sd=web", "-m udp::53=sd=dns"], "udp 0.0.0.0:53", "fd=5", Some("-m udp::53=sd=dns")),
        (&["-m tcp::53=sd=web", "-m udp::53=sd=dns"], "tcp 0.0.0.0:53", "fd=3", Some("-m tcp::53=sd=web")),
        // A socket that cannot fit is skipped, and the next rule decides.
        (&["-m :80=sd=0"], "tcp [::]:80", "allow", None),
        (&["-d", "-m :80=sd=0"], "tcp [::]:80", "deny", Some("-d")),
        (&["-m :80=sd=1", "-m :80=sd=0"], "tcp [::]:80", "fd=4", Some("-m :80=sd=1")),
        (&["-m :80=sd=web"], "udp 0.0.0.0:80", "allow", None),
        (&["-m :80=fd=12"], "tcp 0.0.0.0:80", "allow", None),
        (&["-d", "-m :80=sd=nope"], "tcp 0.0.0.0:80", "deny", Some("-d")),
        // Host names: every address of the socket's family, in the resolver's order
        // (mapped ones for a dual-stack [::]).
        (&["-b web.internal"], "tcp 0.0.0.0:80", "192.0.2.10:80 127.0.0.3:80", Some("-b web.internal")),
        (&["-b web.internal"], "tcp [::]:80", "[::1]:80", Some("-b web.internal")),
        (&["-b web.internal"], "tcp [::]:80 dual", "[::ffff:192.0.2.10]:80 [::ffff:127.0.0.3]:80 [::1]:80", Some("-b web.internal")),
        (&["-m :80=v4.internal:8080"], "tcp [::]:80", "allow", None),
        (&["-m :80=v4.internal:8080"], "tcp 0.0.0.0:80", "127.0.0.4:8080", Some("-m :80=v4.internal:8080")),
        (&["-d", "-m web.internal=allow"], "tcp 127.0.0.3:80", "allow", Some("-m web.internal=allow")),
        (&["-d", "-m web.internal=allow"], "tcp [::1]:80", "allow", Some("-m web.internal=allow")),
        (&["-d", "-m web.internal=allow"], "tcp 127.0.0.5:80", "deny", Some("-d")),
    ];
    for (rules, req, want, want_rule) in rows {
        let p = policy(rules);
        let v = p.decide(&request(req));
        assert_eq!(
            (outcome(&v).as_str(), v.rule.map(|r| r.text.as_str())),
            (*want, *want_rule),
            "{rules:?} {req}"
        );
    }
}

/// Go's start-up (two probes, then the listener) and the other servers' binds under
/// the rules of tests/servers.rs: every bind lands where the rules say.
#[test]
fn real_servers_land_where_the_rules_say() {
    type Row<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
    #[rustfmt::skip]
    let rows: &[Row] = &[
        ("go", &["-b 127.0.0.2", "-b [::1]"], &[
            ("tcp [::1]:0", "[::1]:0"),
            ("tcp [::ffff:127.0.0.1]:0 dual", "[::ffff:127.0.0.2]:0"),
            ("tcp [::]:8098 dual", "[::1]:8098"),
        ]),
        ("go", &["-b [::1]:8098"], &[
            ("tcp [::1]:0", "[::1]:0"),
            ("tcp [::ffff:127.0.0.1]:0 dual", "allow"),
            ("tcp [::]:8098 dual", "[::1]:8098"),
        ]),
        ("go", &["-b 127.0.0.2:8098"], &[
            ("tcp [::1]:0", "allow"),
            ("tcp [::ffff:127.0.0.1]:0 dual", "[::ffff:127.0.0.2]:0"),
            ("tcp [::]:8098 dual", "[::ffff:127.0.0.2]:8098"),
        ]),
        ("go", &["-d", "-m [::]:8098/0=[::1]:8080"], &[
            ("tcp [::1]:0", "listen-judged"),
            ("tcp [::ffff:127.0.0.1]:0 dual", "listen-judged"),
            ("tcp [::]:8098 dual", "[::1]:8080"),
        ]),
        ("go", &["-m :8098=sd=web"], &[
            ("tcp [::1]:0", "allow"),
            ("tcp [::ffff:127.0.0.1]:0 dual", "allow"),
            ("tcp [::]:8098 dual", "fd=4"),
        ]),
        ("nginx", &["-b 127.0.0.2", "-b [::1]"], &[
            ("tcp 0.0.0.0:8080", "127.0.0.2:8080"),
            ("tcp [::]:8080", "[::1]:8080"),
        ]),
        ("nginx", &["-m :8080=sd=web"], &[
            ("tcp 0.0.0.0:8080", "fd=3"),
            ("tcp [::]:8080", "fd=4"),
        ]),
        ("node", &["-b 127.0.0.2:8080"], &[
            ("tcp [::]:8080 dual", "[::ffff:127.0.0.2]:8080"),
        ]),
        ("dnsmasq", &["-m :53=sd=dns", "-m tcp::53=sd=web"], &[
            ("udp 0.0.0.0:53", "fd=5"),
            ("udp [::]:53", "fd=6"),
            ("tcp 0.0.0.0:53", "fd=3"),
            ("tcp [::]:53", "fd=4"),
        ]),
    ];
    for (program, rules, binds) in rows {
        let p = policy(rules);
        for (req, want) in *binds {
            assert_eq!(
                outcome(&p.decide(&request(req))),
                *want,
                "{program} {rules:?} {req}"
            );
        }
    }
}

#[test]
fn says_why_a_rule_was_skipped() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["-m :80=sd=0"],
            "tcp [::]:80",
            "no sd=0 socket is an IPv6 stream socket (fd 3: IPv4 stream)",
        ),
        (
            &["-m :80=sd=web"],
            "udp [::]:80",
            "no sd=web socket is an IPv6 datagram socket (fd 3: IPv4 stream, fd 4: IPv6 stream)",
        ),
        (&["-m :80=fd=12"], "tcp 0.0.0.0:80", "fd=12 was not passed"),
        (
            &["-m :80=[::1]"],
            "tcp 0.0.0.0:80",
            "an IPv4 bind cannot take its address",
        ),
        (
            &["-m :80=127.0.0.1"],
            "tcp [::]:80",
            "an IPv6-only socket cannot take its address",
        ),
        (
            &["-m :80=127.0.0.1"],
            "tcp [::2]:80",
            "an IPv6 bind cannot take its address",
        ),
    ];
    for (rules, req, why) in cases {
        let p = policy(rules);
        let v = p.decide(&request(req));
        assert_eq!(v.rule, None, "{rules:?} {req}");
        let (rule, got) = v.skipped.expect("a skipped rule");
        assert_eq!((rule.text.as_str(), got.as_str()), (rules[0], *why));
    }
}

#[test]
fn start_up_warnings_for_sockets_not_passed() {
    let mut p = policy(&[
        "-m :80=sd=wbe",
        "-m :81=fd=12",
        "-m :82=sd=9",
        "-m :83=sd=web",
    ]);
    let warnings = p.unpassed_sockets();
    assert_eq!(
        warnings,
        [
            "rule '-m :80=sd=wbe': no socket named 'wbe' was passed (LISTEN_FDNAMES=web:web:dns:dns:admin); did you mean sd=web?",
            "rule '-m :81=fd=12': fd 12 was not passed to force-bind (no open socket there)",
            "rule '-m :82=sd=9': sd=9 was not passed (LISTEN_FDS=5: sd=0 to sd=4)",
        ]
    );
    p.inherited = Inherited::default();
    p.rules.truncate(1);
    assert_eq!(
        p.unpassed_sockets(),
        [
            "rule '-m :80=sd=wbe': no socket activation: LISTEN_FDS and LISTEN_PID are not set for force-bind"
        ]
    );
}

#[test]
fn knows_when_listen_must_be_trapped() {
    for (rules, restricts, judges) in [
        (&[][..], false, false),
        (&["-m :80=deny"][..], false, true),
        (&["-m 127.0.0.1=allow"][..], false, false),
        (&["-m 10.0.0.0/8=deny"][..], false, true),
        (&["-d"][..], true, true),
        (&["-b 127.0.0.1"][..], true, true),
        (&["-b [::1]"][..], true, true),
        (&["-m :0=deny"][..], true, true),
        (&["-m :0-100=127.0.0.2"][..], true, true),
        (&["-d", "-m *=allow"][..], false, true),
    ] {
        let p = policy(rules);
        assert_eq!(p.restricts_wildcard(), restricts, "{rules:?}");
        assert_eq!(p.judges_listen(), judges, "{rules:?}");
    }
}

#[test]
fn dual_stack_lookup_only_when_an_ipv4_rule_could_apply() {
    let p = policy(&["-b [::1]", "-m :80=deny"]);
    assert!(!p.needs_dual_stack(&"[::]:80".parse().unwrap()));
    let p = policy(&["-b 127.0.0.1"]);
    assert!(p.needs_dual_stack(&"[::]:80".parse().unwrap()));
    // A mapped bind is IPv4 whatever the setting.
    assert!(!p.needs_dual_stack(&"[::ffff:1.2.3.4]:80".parse().unwrap()));
    assert!(!p.needs_dual_stack(&"[::1]:80".parse().unwrap()));
    assert!(!p.needs_dual_stack(&"0.0.0.0:80".parse().unwrap()));
    let p = policy(&["-m :80=127.0.0.1"]);
    assert!(p.needs_dual_stack(&"[::]:80".parse().unwrap()));
}

#[test]
fn knows_when_a_port_zero_bind_needs_a_chosen_port() {
    for (rules, req, want) in [
        (&["-m :32768-60999=deny"][..], "tcp 0.0.0.0:0", true),
        (&["-m :32768-60999=deny"][..], "udp [::]:0", true),
        (
            &["-m 10.0.0.0:32768-60999/8=deny"][..],
            "tcp 127.0.0.1:0",
            false,
        ),
        (
            &["-m 127.0.0.0:40000-40010/8=deny"][..],
            "tcp [::ffff:127.0.0.1]:0",
            true,
        ),
        (
            &["-m 0.0.0.0:40000-40010/0=deny"][..],
            "tcp [::]:0 dual",
            true,
        ),
        (&["-m 0.0.0.0:40000-40010/0=deny"][..], "tcp [::]:0", false),
        (&["-m tcp::40000-40010=deny"][..], "udp 0.0.0.0:0", false),
        (&["-d"][..], "tcp 0.0.0.0:0", false),
        (&["-m :0-10=deny"][..], "tcp 0.0.0.0:0", false),
    ] {
        assert_eq!(
            policy(rules).denies_some_ports(&request(req)),
            want,
            "{rules:?} {req}"
        );
    }
}

#[test]
fn rewrites_to_the_targets_of_rewrite_rules() {
    for (rules, addr, want) in [
        (&["-d", "-m [::]:80/0=[::1]:8080"][..], "[::1]:8080", true),
        (&["-d", "-m [::]:80/0=[::1]:8080"][..], "[::1]:8081", false),
        (&["-b 127.0.0.2"][..], "127.0.0.2:5", true),
        (&["-b 127.0.0.2"][..], "[::ffff:127.0.0.2]:5", true),
        (&["-b 127.0.0.2"][..], "127.0.0.3:5", false),
        (&["-m :80-90=127.0.0.2"][..], "127.0.0.2:85", true),
        (&["-m :80-90=127.0.0.2"][..], "127.0.0.2:91", false),
        (&["-d", "-m :80=allow"][..], "127.0.0.1:80", false),
    ] {
        assert_eq!(
            policy(rules).rewrites_to(&addr.parse().unwrap()),
            want,
            "{rules:?} {addr}"
        );
    }
}
