// fuzz/checks.rs: the properties the fuzz targets check on any input, shared by the
// cargo-fuzz targets (fuzz_targets/*.rs) and the stable smoke test
// (tests/fuzz_smoke.rs), which include this file as a module. Each check panics,
// with the input in the message, when a property does not hold.

use std::net::{IpAddr, SocketAddr};

use force_bind::policy::{BindRequest, Decision, Purpose, SocketKind};
use force_bind::rule::{self, Action, FdRef, Pattern, Rule};
use force_bind::sockaddr::{self, Decoded};

/// The rule parser on arbitrary bytes (only UTF-8 reaches it: a command-line argument
/// that is not UTF-8 is refused before parsing).
pub fn rule_parser(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        rule_text(text);
    }
}

/// `parse_match` and `parse_bind` on `text`: Ok or Err, never a panic; an Ok rule
/// keeps the user's text, parses again to itself, and its canonical `MATCH=ADDR`
/// form parses to the same pattern and action.
pub fn rule_text(text: &str) {
    match rule::parse_match(text) {
        Ok(r) => {
            assert_eq!(r.text, format!("-m {text}"), "text of -m {text:?}");
            let again = rule::parse_match(&r.text["-m ".len()..]);
            assert_eq!(again.as_ref(), Ok(&r), "-m {text:?} parsed twice");
            same_as_canonical(text, &r);
        }
        Err(e) => error_is_sane(text, &e),
    }
    match rule::parse_bind(text) {
        Ok(r) => {
            assert_eq!(r.text, format!("-b {text}"), "text of -b {text:?}");
            let again = rule::parse_bind(&r.text["-b ".len()..]);
            assert_eq!(again.as_ref(), Ok(&r), "-b {text:?} parsed twice");
            same_as_canonical(text, &r);
        }
        Err(e) => error_is_sane(text, &e),
    }
}

fn error_is_sane(text: &str, e: &rule::RuleError) {
    let message = e.to_string();
    assert!(!e.reason.is_empty(), "{text:?}: empty reason");
    assert!(message.contains(&e.reason), "{text:?}: {message}");
}

fn same_as_canonical(text: &str, r: &Rule) {
    let canonical = format!("{}={}", pattern_text(&r.pattern), action_text(&r.action));
    match rule::parse_match(&canonical) {
        Ok(c) => assert_eq!(
            (&c.pattern, &c.action),
            (&r.pattern, &r.action),
            "{text:?} and its canonical form {canonical:?} differ"
        ),
        Err(e) => panic!("{text:?}: canonical form {canonical:?} does not parse: {e}"),
    }
}

/// MATCH in its fullest form: `[PROTO:]` then `*`, `:FIRST-LAST`,
/// `IP:FIRST-LAST/PREFIX` or `[IPv6]:FIRST-LAST/PREFIX` (`*` for any port). Rules
/// without host names have one network at most.
pub fn pattern_text(p: &Pattern) -> String {
    let proto = p
        .proto
        .map(|p| format!("{}:", p.name()))
        .unwrap_or_default();
    let ports = match p.ports {
        Some(r) => format!("{}-{}", r.first, r.last),
        None => "*".into(),
    };
    match (p.nets.as_deref(), p.ports) {
        (None, None) => format!("{proto}*"),
        (None, Some(_)) => format!("{proto}:{ports}"),
        (Some([net]), _) => format!("{proto}{}:{ports}/{}", host(net.addr()), net.prefix_len()),
        (Some(nets), _) => panic!("{} networks without a host name: {nets:?}", nets.len()),
    }
}

/// ADDR as the parser reads it back.
pub fn action_text(a: &Action) -> String {
    match a {
        Action::Rewrite { ips, port: None } => host(ips[0]),
        Action::Rewrite { ips, port: Some(p) } => format!("{}:{p}", host(ips[0])),
        Action::Replace(FdRef::Fd(n)) => format!("fd={n}"),
        Action::Replace(FdRef::Systemd(n)) => format!("sd={n}"),
        Action::Replace(FdRef::SystemdName(name)) => format!("sd={name}"),
        Action::Allow => "allow".into(),
        Action::Deny => "deny".into(),
    }
}

fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
const AF_UNSPEC: u16 = libc::AF_UNSPEC as u16;

/// The sockaddr decoder on any bytes (the addrlen bytes bind() was given): never a
/// panic, a result consistent with the bytes, and an Inet result that encodes back to
/// the same bytes (the fields the kernel reads) and decodes to itself.
pub fn sockaddr_decode(data: &[u8]) {
    let len = data.len();
    let family = (len >= 2).then(|| u16::from_ne_bytes([data[0], data[1]]));
    match sockaddr::decode(data) {
        Decoded::TooLong(n) => assert!(n == len && len > sockaddr::SOCKADDR_MAX_LEN, "{data:02x?}"),
        _ if len > sockaddr::SOCKADDR_MAX_LEN => panic!("{len} bytes decoded: {data:02x?}"),
        Decoded::TooShort { family: f, len: n } => {
            assert_eq!((f, n), (family, len), "{data:02x?}");
            let min = match family {
                Some(AF_INET6) => sockaddr::SOCKADDR_IN6_MIN_LEN,
                Some(AF_INET | AF_UNSPEC) => sockaddr::SOCKADDR_IN_LEN,
                Some(_) => panic!("family {family:?} too short: {data:02x?}"),
                None => 2,
            };
            assert!(len < min, "{data:02x?}");
        }
        Decoded::OtherFamily(f) => {
            assert_eq!(Some(f), family, "{data:02x?}");
            // AF_UNSPEC with an address other than 0.0.0.0 is nobody's business.
            assert!(f != AF_INET && f != AF_INET6, "{data:02x?}");
        }
        Decoded::Inet(addr) => {
            let raw = sockaddr::encode(&addr);
            let bytes = raw.as_bytes();
            match addr {
                SocketAddr::V4(a) => {
                    assert!(len >= sockaddr::SOCKADDR_IN_LEN, "{data:02x?}");
                    assert!(
                        family == Some(AF_INET)
                            || (family == Some(AF_UNSPEC) && a.ip().is_unspecified()),
                        "{data:02x?}"
                    );
                    assert_eq!(bytes[2..8], data[2..8], "port and address of {data:02x?}");
                }
                SocketAddr::V6(_) => {
                    assert!(len >= sockaddr::SOCKADDR_IN6_MIN_LEN, "{data:02x?}");
                    assert_eq!(family, Some(AF_INET6), "{data:02x?}");
                    // Port, flowinfo, address; the scope id only when it was given
                    // (SIN6_LEN_RFC2133 has none: it is 0).
                    assert_eq!(bytes[2..24], data[2..24], "fields of {data:02x?}");
                    if len >= sockaddr::SOCKADDR_IN6_LEN {
                        assert_eq!(bytes[24..28], data[24..28], "scope id of {data:02x?}");
                    } else {
                        assert_eq!(bytes[24..28], [0; 4], "scope id of {data:02x?}");
                    }
                }
            }
            assert_eq!(sockaddr::decode(bytes), Decoded::Inet(addr), "{data:02x?}");
        }
    }
}

/// Rules (one per line, `b ` before a `-b` argument, else a `-m` one) up to a NUL,
/// then sockaddr bytes: whatever the policy decides is consistent with the rules.
pub fn policy_decide(data: &[u8]) {
    let (text, addr_bytes) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let rules: Vec<Rule> = text
        .lines()
        .take(16)
        .filter_map(|line| match line.strip_prefix("b ") {
            Some(arg) => rule::parse_bind(arg).ok(),
            None if line == "-d" => Some(rule::deny_all()),
            None => rule::parse_match(line).ok(),
        })
        .collect();
    let Decoded::Inet(addr) = sockaddr::decode(addr_bytes) else {
        return;
    };
    let policy = force_bind::policy::Policy {
        rules,
        ..Default::default()
    };
    for (dual_stack, kind, purpose) in [
        (false, SocketKind::TCP, Purpose::Bind),
        (true, SocketKind::TCP, Purpose::Bind),
        (false, SocketKind::UDP, Purpose::Bind),
        (true, SocketKind::TCP, Purpose::Listen),
    ] {
        let req = BindRequest {
            addr,
            dual_stack,
            kind,
            purpose,
        };
        let verdict = policy.decide(&req);
        let why = || format!("{:?} on {req:?} -> {verdict:?}", policy.rules);
        let proto = kind.proto();
        // What the rules see: a v4-mapped bind as its IPv4 address.
        let seen = match addr {
            SocketAddr::V6(a) => a
                .ip()
                .to_ipv4_mapped()
                .map_or(addr, |ip| SocketAddr::new(ip.into(), a.port())),
            v4 => v4,
        };
        let ephemeral =
            |r: &Rule| purpose == Purpose::Bind && addr.port() == 0 && !r.pattern.names_port_zero();
        let Some(r) = verdict.rule else {
            assert_eq!(verdict.decision, Decision::Allow, "{}", why());
            // Every rule that matched could not be carried out on this socket (no
            // inherited socket is passed here), or leaves a port-0 bind alone.
            for r in policy
                .rules
                .iter()
                .filter(|r| r.pattern.matches(&seen, proto))
            {
                assert!(
                    matches!(r.action, Action::Rewrite { .. } | Action::Replace(_))
                        || (ephemeral(r) && matches!(r.action, Action::Replace(_))),
                    "{} was skipped: {}",
                    r.text,
                    why()
                );
            }
            continue;
        };
        if !r.pattern.matches(&seen, proto) {
            assert!(
                dual_stack && addr.is_ipv6(),
                "{} does not match: {}",
                r.text,
                why()
            );
        }
        match (&r.action, &verdict.decision) {
            (Action::Allow, Decision::Allow) | (Action::Deny, Decision::Deny(_)) => {}
            // A port-0 bind is not denied: its listen() is judged.
            (Action::Deny, Decision::Allow) => {
                assert!(ephemeral(r) && verdict.judge_listen, "{}", why())
            }
            (Action::Rewrite { ips, port }, Decision::Rewrite(to)) => {
                assert!(!to.is_empty(), "{}", why());
                for to in to {
                    assert_eq!(to.is_ipv4(), addr.is_ipv4(), "family changed: {}", why());
                    let want_port = match ephemeral(r) {
                        true => 0,
                        false => port.unwrap_or(addr.port()),
                    };
                    assert_eq!(to.port(), want_port, "port: {}", why());
                    let ip = match to {
                        SocketAddr::V6(to6) => {
                            to6.ip().to_ipv4_mapped().map_or(to.ip(), IpAddr::V4)
                        }
                        to => to.ip(),
                    };
                    assert!(ips.contains(&ip), "{}", why());
                }
            }
            _ => panic!("decision does not follow the rule: {}", why()),
        }
    }
}
