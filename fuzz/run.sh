#!/usr/bin/env bash
# fuzz/run.sh SECONDS [TARGET...]: runs each cargo-fuzz target (all of them by
# default) for SECONDS with the nightly toolchain, keeping the corpus in
# fuzz/corpus/TARGET between runs. Exits non-zero on the first crash; libFuzzer
# writes the input to fuzz/artifacts/TARGET/ and prints how to reproduce it
# (`cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...`).
# Needs `cargo install cargo-fuzz` and `rustup toolchain install nightly`.
set -euo pipefail
cd "$(dirname "$0")"

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

for target in "${targets[@]}"; do
    dict=()
    case $target in
        rule_parser | policy_decide) dict=(-dict=rule.dict) ;;
    esac
    mkdir -p "corpus/$target"
    echo "== fuzzing $target for ${seconds}s"
    # -max_total_time bounds the run; -timeout fails an input that hangs (10 s: an
    # input takes microseconds, but a loaded CI machine stalls the process for
    # whole seconds); -rss_limit_mb keeps a leak from taking the machine.
    cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}"
done
