#!/bin/sh
# tests/vm/scenarios.sh: force-bind's core scenarios, run *inside* the old-kernel VM
# (busybox sh, static binaries in /vm; see tests/vm/run.sh, which boots it).
#
# Each scenario runs under every engine: ptrace (-p), notify (--engine notify), auto
# (run-in-vm mounts cgroup2 at boot, so as root auto takes bpf for the policies bpf
# carries out and notify for the rest), and auto under `oldkernel --as 4.19` (an
# emulated pre-5.0 kernel: auto must fall back to ptrace); the bpf engine and auto's
# choices have their own cases. It reads back what the kernel bound
# from bindprobe's / static_bind's getsockname() report. The same script runs in the
# x86_64 and the aarch64 VM; on aarch64 it also runs arm32_bind, an AArch32 program.
# Prints one line per check and a summary; exits 1 if any check failed.

cd /vm || exit 125
export PATH="/vm:$PATH"

passed=0
failed=0
port=21000

# expect NAME STATUS PATTERN CMD...: CMD's exit status must be STATUS and its
# output (stdout and stderr) must match the extended regex PATTERN.
expect() {
    name=$1 want_status=$2 pattern=$3
    shift 3
    out=$("$@" 2>&1)
    status=$?
    if [ "$status" = "$want_status" ] && printf '%s\n' "$out" | grep -Eq -- "$pattern"; then
        passed=$((passed + 1))
        echo "ok   $engine_name: $name"
    else
        failed=$((failed + 1))
        echo "FAIL $engine_name: $name (status $status, want $want_status; want /$pattern/)"
        echo "     command: $*"
        printf '%s\n' "$out" | sed 's/^/     | /'
    fi
}

# refute NAME PATTERN CMD...: CMD's output must not match PATTERN (any status).
refute() {
    name=$1 pattern=$2
    shift 2
    out=$("$@" 2>&1)
    if printf '%s\n' "$out" | grep -Eq -- "$pattern"; then
        failed=$((failed + 1))
        echo "FAIL $engine_name: $name (output matches /$pattern/)"
        printf '%s\n' "$out" | sed 's/^/     | /'
    else
        passed=$((passed + 1))
        echo "ok   $engine_name: $name"
    fi
}

next_port() {
    port=$((port + 1))
    p=$port
}

scenarios() {
    # $@: how to run force-bind with this engine.
    # Binds whose sockaddr is on a userfaultfd page nobody serves fail with EFAULT at
    # once (force-bind reads /proc/PID/mem first), and hold up no other bind.
    # Where auto takes bpf (6.1: an IPv4 rule alone is carried out there) no
    # supervisor reads the program's memory, and its confinement (no CAP_SYS_PTRACE)
    # leaves the attack no userfaultfd: nothing to show (tests/attacks.rs, likewise).
    next_port
    if "$@" -v -b 127.0.0.1 true 2>&1 | grep -q "engine: bpf ("; then
        echo "n/a  $engine_name: 70 binds on a userfaultfd page: auto takes bpf, where no supervisor reads memory"
    else
        expect "70 binds on a userfaultfd page: EFAULT, and the next bind is served" 0 \
            "^stalled: 70 of 70 returned, errors( 14){70}$" \
            "$@" -b 127.0.0.1 attack_stall 70 "$p" </dev/null
    fi
    next_port
    expect "rewrite 0.0.0.0:P to 127.0.0.4:$p" 0 "^bound 4 127\.0\.0\.4:$p " \
        "$@" -b "127.0.0.4:$p" bindprobe --addr 0.0.0.0 --port "$((p + 1000))"
    expect "a port-0 bind keeps port 0 (address rewritten)" 0 "^bound 4 127\.0\.0\.4:[0-9]+ " \
        "$@" -b "127.0.0.4:$p" bindprobe --addr 0.0.0.0 --port 0
    next_port
    expect "rewrite keeping the port" 0 "^bound 4 127\.0\.0\.5:$p " \
        "$@" -b 127.0.0.5 bindprobe --addr 0.0.0.0 --port "$p"
    next_port
    expect "IPv4 rule reaches a dual-stack [::] socket" 0 "^bound 6 \[::ffff:127\.0\.0\.1\]:$p " \
        "$@" -b "127.0.0.1:$p" bindprobe --family 6 --addr :: --v6only 0 --port "$p"
    next_port
    expect "a v4-mapped bind is IPv4: an IPv6 rule leaves it" 0 "^bound 6 \[::ffff:127\.0\.0\.1\]:$p " \
        "$@" -b "[::1]" bindprobe --family 6 --addr ::ffff:127.0.0.1 --v6only 0 --port "$p"
    next_port
    expect "IPv6 rewrite" 0 "^bound 6 \[::1\]:$p " \
        "$@" -b "[::1]:$p" bindprobe --family 6 --addr :: --v6only 1 --port "$p"
    next_port
    expect "static program rewritten" 0 "^bound 4 127\.0\.0\.4:$p$" \
        "$@" -b "127.0.0.4:$p" static_bind 127.0.0.1 "$p"
    next_port
    expect "deny every bind (EPERM)" 1 "^error 1 " \
        "$@" -d bindprobe --port "$p"
    expect "static program denied" 1 "^error 1 " \
        "$@" -d static_bind 127.0.0.1 "$p"
    expect "deny: a port-0 bind goes through" 0 "^bound 4 127\.0\.0\.1:[0-9]+ " \
        "$@" -d bindprobe --port 0
    if [ "$engine_name" != auto-oldkernel ]; then
        # 5.6+: the port the kernel gave it is judged at listen().
        expect "deny: a port-0 socket's listen() is judged (EPERM)" 1 "^error 1 .*\(listen\)" \
            "$@" -d bindprobe --port 0 --listen
    fi
    # Host names, from the VM's own /etc/hosts: the first address is not local.
    next_port
    expect "host name: the first local address binds" 0 "^bound 4 127\.0\.0\.3:$p " \
        "$@" -b web.internal bindprobe --addr 0.0.0.0 --port "$p"
    expect "host name that resolves to nothing: exit 2" 2 "nosuch\.internal" \
        "$@" -b nosuch.internal bindprobe --port 0
    next_port
    expect "deny, then allow one port" 0 "^bound 4 127\.0\.0\.1:$p " \
        "$@" -d -m ":$p=allow" bindprobe --port "$p"
    next_port
    expect "threads and forks all rewritten" 0 "^bound 4 127\.0\.0\.6:" \
        "$@" -b 127.0.0.6 bindprobe --threads 4 --forks 2 --port 0
    refute "threads and forks: nothing escapes" "^bound 4 127\.0\.0\.1:" \
        "$@" -b 127.0.0.6 bindprobe --threads 4 --forks 2 --port 0

    # Socket activation: sd_activate listens on 127.0.0.1:P, passes it as fd 3 with
    # LISTEN_FDNAMES=web and execs force-bind, so the program's bind of :Q must
    # become the passed socket (getsockname says P).
    next_port
    a=$p
    next_port
    expect "fd=3 replaces the program's socket" 0 "^bound 4 127\.0\.0\.1:$a " \
        sd_activate 127.0.0.1 "$a" web "$@" -m ":$p=fd=3" bindprobe --port "$p" --listen
    next_port
    a=$p
    next_port
    expect "sd=web (LISTEN_FDNAMES)" 0 "^bound 4 127\.0\.0\.1:$a " \
        sd_activate 127.0.0.1 "$a" web "$@" -m ":$p=sd=web" bindprobe --port "$p" --listen
    next_port
    a=$p
    next_port
    expect "sd=0 with -L" 0 "^bound 4 127\.0\.0\.1:$a " \
        sd_activate 127.0.0.1 "$a" web "$@" -L -m ":$p=sd=0" bindprobe --port "$p" --listen

    # One name for a socket per family, and for TCP and UDP on one address: each
    # bind gets the passed socket of its own family and type.
    next_port
    a=$p
    next_port
    expect "sd=web: the IPv6 bind gets the IPv6 socket" 0 "^bound 6 \[::1\]:$a " \
        sd_activate_multi --names web:web "tcp:127.0.0.1:$a" "tcp:[::1]:$a" -- \
        "$@" -L -m ":$p=sd=web" bindprobe --family 6 --addr :: --v6only 1 --port "$p" --listen
    expect "sd=web: the IPv4 bind gets the IPv4 socket" 0 "^bound 4 127\.0\.0\.1:$a " \
        sd_activate_multi --names web:web "tcp:127.0.0.1:$a" "tcp:[::1]:$a" -- \
        "$@" -L -m ":$p=sd=web" bindprobe --port "$p" --listen
    expect "sd=dns: the UDP bind gets the datagram socket" 0 "^bound 4 127\.0\.0\.1:$a " \
        sd_activate_multi --names dns:dns "tcp:127.0.0.1:$a" "udp:127.0.0.1:$a" -- \
        "$@" -m ":$p=sd=dns" bindprobe --udp --port "$p"
    expect "udp: MATCH picks sd=1" 0 "^bound 4 127\.0\.0\.1:$a " \
        sd_activate_multi "tcp:127.0.0.1:$a" "udp:127.0.0.1:$a" -- \
        "$@" -m "tcp::$p=sd=0" -m "udp::$p=sd=1" bindprobe --udp --port "$p"
    expect "a socket of another family is skipped, and said so" 0 "skipped: no sd=0 socket is an IPv6 stream" \
        sd_activate_multi "tcp:127.0.0.1:$a" -- \
        "$@" -m ":$p=sd=0" bindprobe --family 6 --addr ::1 --port "$p"

    if [ "$arch" = aarch64 ]; then
        # AArch32, the compat ABI of an aarch64 kernel (i386's place on x86_64). A
        # 64-bit tracer gets its registers in AArch32's own layout, not aarch64's.
        next_port
        expect "AArch32 program rewritten" 0 "^bound 4 127\.0\.0\.4:$p$" \
            "$@" -b "127.0.0.4:$p" arm32_bind 127.0.0.1 "$p"
        expect "AArch32 program denied" 1 "^error 1 " \
            "$@" -d arm32_bind 127.0.0.1 "$p"
        next_port
        a=$p
        next_port
        expect "AArch32 program: fd=3 replaces its socket" 0 "^bound 4 127\.0\.0\.1:$a$" \
            sd_activate 127.0.0.1 "$a" web "$@" -m ":$p=fd=3" arm32_bind 127.0.0.1 "$p"
    fi
}

# The VM's root is its own: a hosts file for the host-name scenarios (no DNS: no
# nameserver is configured, so only files answer).
printf '192.0.2.10 web.internal\n127.0.0.3 web.internal\n::1 web.internal\n' > /etc/hosts
printf 'hosts: files\n' > /etc/nsswitch.conf

arch=$(uname -m)
echo "kernel: $(uname -r) ($arch)"
force-bind -V | sed 's/^/  /'

if [ "$arch" = aarch64 ]; then
    engine_name=no-engine
    expect "this kernel and CPU run AArch32 programs" 0 "^bound 4 127\.0\.0\.1:[0-9]+$" \
        arm32_bind 127.0.0.1 0
fi

engine_name=ptrace
scenarios force-bind -p
engine_name=notify
scenarios force-bind --engine notify
engine_name=auto
# Root with cgroup2 mounted (above): bpf, with -v's events from the ring buffer.
expect "auto picks bpf on this kernel (root, cgroup2)" 0 "engine: bpf \(root" force-bind -v true
scenarios force-bind
engine_name=auto-oldkernel
expect "auto picks ptrace on an emulated 4.19" 0 "engine: ptrace" \
    oldkernel --as 4.19 -- force-bind -v true
scenarios oldkernel --as 4.19 -- force-bind

# The bpf engine (issue 13): cgroup programs on the VM's cgroup2 mount (busybox's
# init mounts none). Its own cases, IPv4 rules alone on [::] among them.
engine_name=bpf
grep -q cgroup2 /proc/mounts || { mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup; }
bpf="force-bind --engine bpf"
next_port
expect "rewrite 0.0.0.0:P to 127.0.0.4:P" 0 "^bound 4 127\.0\.0\.4:$p " \
    $bpf -b 127.0.0.4 -b "[::1]" bindprobe --addr 0.0.0.0 --port "$p"
expect "a port-0 bind keeps port 0 (address rewritten)" 0 "^bound 4 127\.0\.0\.4:[0-9]+ " \
    $bpf -b 127.0.0.4 -b "[::1]" bindprobe --addr 0.0.0.0 --port 0
next_port
expect "dual-stack [::] to [::1]" 0 "^bound 6 \[::1\]:$p " \
    $bpf -b 127.0.0.4 -b "[::1]" bindprobe --family 6 --addr :: --v6only 0 --port "$p"
expect "v4-mapped is IPv4" 0 "^bound 6 \[::ffff:127\.0\.0\.4\]:$p " \
    $bpf -b 127.0.0.4 -b "[::1]" bindprobe --family 6 --addr ::ffff:0.0.0.0 --port "$p"
next_port
expect "static program rewritten" 0 "^bound 4 127\.0\.0\.4:$p$" \
    $bpf -b "127.0.0.4:$p" -b "[::1]" static_bind 127.0.0.1 "$p"
next_port
expect "deny every bind but one port" 1 "^error 1 " \
    $bpf -d -m ":$((p + 1))=allow" bindprobe --port "$p"
expect "the allowed port binds" 0 "^bound 4 127\.0\.0\.1:$((p + 1)) " \
    $bpf -d -m ":$((p + 1))=allow" bindprobe --port "$((p + 1))"
expect "a port-0 socket's listen is judged" 1 "^error 1 " \
    $bpf -d -m ":$((p + 1))=allow" bindprobe --port 0 --listen
# An IPv4 rule alone: bind6 reads IPV6_V6ONLY (bpf_probe_read_kernel, 5.5) and
# decides [::] per mode; post_bind6 refuses what a race with setsockopt could leave.
# That needs a kernel that gives back the port of a refused bind (struct proto's
# put_port, 2022): 6.1 has it, 5.10 does not, and refuses such a policy instead.
case $(uname -r) in
5.10.*)
    expect "IPv4 rule alone: refused where a refused bind keeps its port (5.10)" 2 "does not undo a bind" \
        $bpf -b 127.0.0.4 true
    ;;
*)
    next_port
    expect "IPv4 rule alone: dual-stack [::] to the mapped address" 0 "^bound 6 \[::ffff:127\.0\.0\.4\]:$p " \
        $bpf -b 127.0.0.4 bindprobe --family 6 --addr :: --v6only 0 --port "$p"
    expect "IPv4 rule alone: IPv6-only [::] untouched" 0 "^bound 6 \[::\]:$p " \
        $bpf -b 127.0.0.4 bindprobe --family 6 --addr :: --v6only 1 --port "$p"
    expect "IPv4 rule alone: -v says where IPV6_V6ONLY is read" 0 "IPV6_V6ONLY read from bit 5 of byte 19 of struct sock \(/sys/kernel/btf/vmlinux|IPV6_V6ONLY read from bit 5 of byte 19 of struct sock \(the known layout" \
        $bpf -v -b 127.0.0.4 true
    next_port
    expect "an IPv4 deny denies a dual-stack [::]" 1 "^error 1 " \
        $bpf -m "0.0.0.0:$p/0=deny" bindprobe --family 6 --addr :: --v6only 0 --port "$p"
    expect "an IPv4 deny leaves an IPv6-only [::]" 0 "^bound 6 \[::\]:$p " \
        $bpf -m "0.0.0.0:$p/0=deny" bindprobe --family 6 --addr :: --v6only 1 --port "$p"
    expect "IPV6_V6ONLY flipped during the bind: never a dual-stack [::]" 0 "^tries [0-9]+ bound [0-9]+ escapes 0$" \
        sh -c 'ulimit -n 65536 2>/dev/null; exec "$@"' sh $bpf -b 127.0.0.1 escape_v6flip 3
    ;;
esac
expect "a rewrite to [::] where [::] depends on IPV6_V6ONLY is refused" 2 "rewrite to \[::\]" \
    $bpf -b 127.0.0.1 -m "[::1]:80=[::]" true
# Bind events (bpf/events.rs): a ring buffer fed by event programs before the
# policy and at post-bind. On 5.10 BPF maps are still charged to RLIMIT_MEMLOCK:
# force-bind raises its own for the ring buffer, and the program keeps its limit.
next_port
expect "events: a rewrite, with what the kernel bound" 1 \
    "\(bindprobe\): bind tcp 0\.0\.0\.0:$p: rewritten to 127\.0\.0\.4:$p by '-b 127\.0\.0\.4': ok, bound 127\.0\.0\.4:$p$" \
    $bpf -v -b 127.0.0.4 -b "[::1]" bindprobe --addr 0.0.0.0 --port "$p,$p"
expect "events: a bind that failed (EADDRINUSE), errno unknown" 1 \
    "bind tcp 0\.0\.0\.0:$p: rewritten to 127\.0\.0\.4:$p .*: failed, errno unknown$" \
    $bpf -v -b 127.0.0.4 -b "[::1]" bindprobe --addr 0.0.0.0 --port "$p,$p"
expect "events: a denied bind in JSON" 1 '"address":"127\.0\.0\.1:'"$p"'".*"action":"denied","result":"error","errno":"EPERM"' \
    $bpf --json -d -m ":$((p + 1))=allow" bindprobe --port "$p"
memlock=$(ulimit -l)
expect "events: the program keeps its own RLIMIT_MEMLOCK" 0 "^$memlock$" \
    $bpf --json -b 127.0.0.4 -b "[::1]" sh -c 'ulimit -l'
refute "events: no warning that there are none" "reports no bind events" \
    $bpf --json -b 127.0.0.4 -b "[::1]" bindprobe --addr 0.0.0.0 --port 0
refute "the cgroup is removed" "force-bind-" ls /sys/fs/cgroup

# auto with cgroup2 mounted, as root (clone3 CLONE_INTO_CGROUP is 5.7): bpf for a
# policy it carries out, with -v too (bind events from the ring buffer), notify for
# one it refuses (an IPv4 rule alone on 5.10, see above); ptrace under the emulated
# 4.19.
engine_name=auto-bpf
next_port
expect "auto takes bpf: the program starts in its cgroup" 0 "^0::/force-bind-" \
    force-bind -b 127.0.0.4 -b "[::1]" cat /proc/self/cgroup
expect "auto takes bpf: rewrite 0.0.0.0:P to 127.0.0.4:P" 0 "^bound 4 127\.0\.0\.4:$p " \
    force-bind -b 127.0.0.4 -b "[::1]" bindprobe --addr 0.0.0.0 --port "$p"
expect "auto takes bpf under -v, which wants bind events" 0 "engine: bpf \(root" \
    force-bind -v -b 127.0.0.4 -b "[::1]" true
case $(uname -r) in
5.10.*)
    expect "auto falls back to notify for an IPv4 rule alone (5.10)" 0 "engine: notify \(bpf: " \
        force-bind -v -b 127.0.0.4 true
    refute "auto with an IPv4 rule alone stays out of a cgroup (5.10)" "^0::/force-bind-" \
        force-bind -b 127.0.0.4 cat /proc/self/cgroup
    ;;
*)
    expect "auto takes bpf for an IPv4 rule alone" 0 "^0::/force-bind-" \
        force-bind -b 127.0.0.4 cat /proc/self/cgroup
    ;;
esac
expect "auto under an emulated 4.19 ends at ptrace" 0 "engine: ptrace" \
    oldkernel --as 4.19 -- force-bind -v -b 127.0.0.4 -b "[::1]" true
refute "auto under an emulated 4.19 stays out of a cgroup" "^0::/force-bind-" \
    oldkernel --as 4.19 -- force-bind -b 127.0.0.4 -b "[::1]" cat /proc/self/cgroup

echo "vm scenarios: $passed passed, $failed failed"
[ "$failed" = 0 ]
