#!/bin/sh
# tests/install-deps.sh: install, with apt, every program the test suite runs, on a
# fresh Debian (or Ubuntu) machine. Works as root or through sudo (used only when not
# root); runs `apt-get update` only when a package is missing; idempotent.
#
# Installing a server package (nginx-light, memcached) would start its service on a
# machine without systemd, through invoke-rc.d: a policy-rc.d that says "no" is put
# in place for the install, when there is none, and removed afterwards. The tests
# start their own servers, each in a private network namespace.
set -eu

packages="netcat-openbsd socat ncat systemd gcc gcc-multilib libc6-dev python3 iproute2
    util-linux man-db nginx-light memcached dnsmasq-base golang-go nodejs file
    linux-libc-dev-arm64-cross linux-libc-dev-armhf-cross"
# The agent's tests (tests/agent.rs): OCI runtimes, a static busybox for the
# containers, podman's default seccomp profile for --profile --base, jq for the
# README's runc recipe, and podman for its recipe (without its recommends: the test
# gives it a rootfs and a network namespace, so it needs no image tools, slirp4netns
# or CNI; it starts no service).
packages="$packages runc crun busybox-static golang-github-containers-common jq podman"
# The aarch64 VM test's cross build (tests/vm/run.sh --arch arm64): clang and lld with
# the arm64 glibc and gcc 12's (bookworm's) libgcc, as gcc-aarch64-linux-gnu would
# remove gcc-multilib.
packages="$packages clang lld libc6-dev-arm64-cross libgcc-12-dev-arm64-cross"

missing=
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ]; then
    as_root=
elif command -v sudo >/dev/null 2>&1; then
    as_root=sudo
else
    echo "tests/install-deps.sh: needs root or sudo to install:$missing" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
added_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $as_root tee "$policy" >/dev/null
    $as_root chmod 755 "$policy"
    added_policy=1
fi
cleanup() { [ -z "$added_policy" ] || $as_root rm -f "$policy"; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$as_root apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is wanted
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "tests/install-deps.sh: installed$missing"
