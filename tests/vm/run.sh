#!/usr/bin/env bash
# tests/vm/run.sh: force-bind on a real old kernel. Builds the static release binary
# (`cargo static`, see .cargo/config.toml) and static helpers, boots Debian
# bullseye's 5.10 kernel with the shared `run-in-vm` tool, and runs
# tests/vm/scenarios.sh inside it: rewrite, deny, fd/sd activation, threads and forks,
# under the ptrace, notify and auto engines, and auto under the emulated pre-5.0
# kernel (`oldkernel --as 4.19`). Exits non-zero if any scenario fails.
#
# Skipped (exit 0, with the reason) when /dev/kvm is absent or the shared VM tools
# are not checked out beside this repository. run-in-vm caches the kernel and busybox
# in $RUN_IN_VM_CACHE (default /tmp/vmcache), so only the first run downloads.
#
# Options: --kernel K (default bullseye), --timeout SECONDS (default 170).
set -euo pipefail
cd "$(dirname "$0")/../.."

kernel=bullseye
timeout=170
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) kernel=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        *) echo "usage: $0 [--kernel K] [--timeout SECONDS]" >&2; exit 2 ;;
    esac
done

vm_tools=${FORCE_BIND_VM_TOOLS:-../shared/tools/vm}
if [ ! -e /dev/kvm ]; then
    echo "tests/vm: SKIPPED: /dev/kvm is absent (no virtualisation on this machine)"
    exit 0
fi
if [ ! -x "$vm_tools/run-in-vm" ]; then
    echo "tests/vm: SKIPPED: $vm_tools/run-in-vm not found (set FORCE_BIND_VM_TOOLS)"
    exit 0
fi

start=$(date +%s)
triple=x86_64-unknown-linux-gnu
cargo static --locked --quiet --bin force-bind --example bindprobe
bin=target/$triple/release
out=target/vm
mkdir -p "$out"
for c in tests/c/static_bind.c tests/c/sd_activate.c tests/c/sd_activate_multi.c "$vm_tools/probe/oldkernel.c"; do
    gcc -static -O2 -Wall -o "$out/$(basename "$c" .c)" "$c"
done
for f in "$bin/force-bind" "$bin/examples/bindprobe" "$out"/static_bind "$out"/sd_activate "$out"/sd_activate_multi "$out"/oldkernel; do
    if ldd "$f" >/dev/null 2>&1 && ! ldd "$f" 2>&1 | grep -q 'statically linked'; then
        echo "tests/vm: $f is dynamically linked; the VM has no shared libraries" >&2
        exit 1
    fi
done
built=$(date +%s)

status=0
"$vm_tools/run-in-vm" -v --kernel "$kernel" --timeout "$timeout" \
    --add "$bin/force-bind" "$bin/examples/bindprobe" \
    "$out/static_bind" "$out/sd_activate" "$out/sd_activate_multi" "$out/oldkernel" \
    -- tests/vm/scenarios.sh || status=$?
end=$(date +%s)
echo "tests/vm: build $((built - start)) s, boot and run $((end - built)) s, exit status $status"
exit "$status"
