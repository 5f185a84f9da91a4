#!/usr/bin/env bash
# tests/vm/run.sh: force-bind on a real old kernel. Builds the static release binary
# (`cargo static`, see .cargo/config.toml) and static helpers, boots Debian
# bullseye's 5.10 kernel with the shared `run-in-vm` tool, and runs
# tests/vm/scenarios.sh inside it: rewrite, deny, fd/sd activation, threads and forks,
# under the ptrace, notify and auto engines, and auto under the emulated pre-5.0
# kernel (`oldkernel --as 4.19`). Exits non-zero if any scenario fails.
#
# --arch arm64 does the same for aarch64: force-bind, bindprobe and the C helpers are
# cross-built (clang and lld against Debian's arm64 glibc, see cross_cc below; natively
# on an aarch64 host), plus arm32_bind, an AArch32 program for the compat ABI, and the
# guest is emulated (qemu TCG, cortex-a57). oldkernel is built with
# tests/vm/oldkernel-aarch64.h, which points its native-ABI section at aarch64.
#
# Skipped (exit 0, with the reason) when the shared VM tools are not checked out
# beside this repository, for amd64 when /dev/kvm is absent, and for arm64 when a
# cross tool is missing; with FORCE_BIND_REQUIRE=all (CI) a skip fails instead.
# run-in-vm caches the kernel and busybox in $RUN_IN_VM_CACHE (default /tmp/vmcache),
# so only the first run downloads.
#
# Options: --arch amd64|arm64 (default amd64; x86_64 and aarch64 also do),
# --kernel K (default bullseye), --timeout SECONDS (default 170, arm64 400).
set -euo pipefail
cd "$(dirname "$0")/../.."

arch=amd64
kernel=bullseye
timeout=
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) arch=$2; shift 2 ;;
        --kernel) kernel=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        *) echo "usage: $0 [--arch amd64|arm64] [--kernel K] [--timeout SECONDS]" >&2; exit 2 ;;
    esac
done
case "$arch" in
    amd64 | x86_64) arch=amd64 triple=x86_64-unknown-linux-gnu timeout=${timeout:-170} ;;
    # TCG runs the scenarios in ~30 s here; the margin is for a loaded machine.
    arm64 | aarch64) arch=arm64 triple=aarch64-unknown-linux-gnu timeout=${timeout:-400} ;;
    *) echo "$0: unknown --arch $arch (amd64 or arm64)" >&2; exit 2 ;;
esac

# skip REASON: the run cannot happen here; under FORCE_BIND_REQUIRE=all, which CI
# sets, that is a failure (tests/common/mod.rs has the same switch).
skip() {
    if [ "${FORCE_BIND_REQUIRE:-}" = all ]; then
        echo "tests/vm ($arch): FORCE_BIND_REQUIRE=all, so it may not skip: $1" >&2
        exit 1
    fi
    echo "tests/vm ($arch): SKIPPED: $1"
    exit 0
}

vm_tools=${FORCE_BIND_VM_TOOLS:-../shared/tools/vm}
[ -x "$vm_tools/run-in-vm" ] || skip "$vm_tools/run-in-vm not found (set FORCE_BIND_VM_TOOLS)"
if [ "$arch" = amd64 ] && [ ! -e /dev/kvm ]; then
    skip "/dev/kvm is absent (no virtualisation on this machine)"
fi

# Where cargo puts what it builds (CARGO_TARGET_DIR, as cargo reads it, else target/).
target_dir=${CARGO_TARGET_DIR:-target}
bin=$target_dir/$triple/release
out=$target_dir/vm/$arch
mkdir -p "$out"
oldkernel_src=$vm_tools/probe/oldkernel.c
helpers="tests/c/static_bind.c tests/c/sd_activate.c tests/c/sd_activate_multi.c tests/c/attack_stall.c tests/c/escape_v6flip.c"

start=$(date +%s)
if [ "$arch" = amd64 ]; then
    cargo static --locked --quiet --bin force-bind --example bindprobe
    for c in $helpers "$oldkernel_src"; do
        gcc -static -O2 -Wall -pthread -o "$out/$(basename "$c" .c)" "$c"
    done
else
    if [ "$(uname -m)" = aarch64 ]; then
        cross_cc=(gcc)
        cargo static-aarch64 --locked --quiet --bin force-bind --example bindprobe
    else
        # Debian's gcc-aarch64-linux-gnu conflicts with gcc-multilib, which the
        # i386 tests need: clang and lld against libc6-dev-arm64-cross's glibc and
        # libgcc-12-dev-arm64-cross's crt files and libgcc instead (tests/install-deps.sh).
        sysroot=/usr/aarch64-linux-gnu
        cross_cc=(clang --target=aarch64-linux-gnu --sysroot="$sysroot" -fuse-ld=lld)
        command -v clang >/dev/null && command -v ld.lld >/dev/null ||
            skip "clang or ld.lld not installed (tests/install-deps.sh)"
        [ -e "$sysroot/lib/libc.a" ] || skip "$sysroot/lib/libc.a not found (libc6-dev-arm64-cross)"
        [ -n "$(find /usr/lib/gcc-cross/aarch64-linux-gnu -name crtbeginT.o 2>/dev/null)" ] ||
            skip "no aarch64 crtbeginT.o (libgcc-12-dev-arm64-cross)"
        [ -d "$(rustc --print target-libdir --target "$triple" 2>/dev/null)" ] ||
            skip "no Rust standard library for $triple (rustup target add $triple)"
        link_args=""
        for a in "${cross_cc[@]:1}"; do
            link_args="$link_args, '-C', 'link-arg=$a'"
        done
        cargo static-aarch64 --locked --quiet --bin force-bind --example bindprobe \
            --config "target.$triple.linker = 'clang'" \
            --config "target.$triple.rustflags = ['-C', 'target-feature=+crt-static'$link_args]"
    fi
    for c in $helpers; do
        "${cross_cc[@]}" -static -O2 -Wall -pthread -o "$out/$(basename "$c" .c)" "$c"
    done
    # oldkernel.c's native-ABI section tests seccomp_data.arch against
    # AUDIT_ARCH_X86_64; the header makes that AUDIT_ARCH_AARCH64 (why that is
    # enough is said there). Its i386 section then matches nothing, as it should.
    "${cross_cc[@]}" -static -O2 -Wall -include tests/vm/oldkernel-aarch64.h \
        -o "$out/oldkernel" "$oldkernel_src"
    # Freestanding (no AArch32 C library is installed): clang alone, any host.
    command -v clang >/dev/null || skip "clang not installed (tests/install-deps.sh)"
    clang --target=armv7a-linux-gnueabi -marm -ffreestanding -fno-stack-protector \
        -nostdlib -static -fuse-ld=lld -O2 -Wall -o "$out/arm32_bind" tests/vm/arm32_bind.c
fi
helper_bins=("$out"/static_bind "$out"/sd_activate "$out"/sd_activate_multi "$out"/attack_stall "$out"/escape_v6flip "$out"/oldkernel)
[ "$arch" = amd64 ] || helper_bins+=("$out"/arm32_bind)
# The VM has no shared libraries: a program that asks for an ELF interpreter
# (ld.so) cannot start there. readelf reads a foreign architecture's ELF too.
for f in "$bin/force-bind" "$bin/examples/bindprobe" "${helper_bins[@]}"; do
    if readelf -lW "$f" | grep 'program interpreter' >/dev/null; then
        echo "tests/vm: $f is dynamically linked; the VM has no shared libraries" >&2
        exit 1
    fi
done
built=$(date +%s)

status=0
"$vm_tools/run-in-vm" -v --arch "$arch" --kernel "$kernel" --timeout "$timeout" \
    --add "$bin/force-bind" "$bin/examples/bindprobe" "${helper_bins[@]}" \
    -- tests/vm/scenarios.sh || status=$?
end=$(date +%s)
echo "tests/vm ($arch, $kernel): build $((built - start)) s, boot and run $((end - built)) s, exit status $status"
exit "$status"
