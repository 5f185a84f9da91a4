#!/usr/bin/env bash
# packaging/deb.sh: builds the Debian package of force-bind with cargo-deb: the static
# binary (`cargo static`), its man page and its bash/zsh/fish completions (generated
# by the binary itself), the README and the recipe units. The metadata is in
# Cargo.toml's [package.metadata.deb]. Prints the path of the .deb.
# Needs cargo-deb (`cargo install cargo-deb --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."

triple=x86_64-unknown-linux-gnu
if ! cargo deb --version >/dev/null 2>&1; then
    echo "packaging/deb.sh: cargo-deb is missing: cargo install cargo-deb --locked" >&2
    exit 1
fi
cargo static --locked --quiet --bin force-bind
bin=target/$triple/release/force-bind

# Generated documentation; Cargo.toml's assets name these paths.
assets=target/assets
mkdir -p "$assets"
"$bin" --generate-man > "$assets/force-bind.1"
"$bin" --completions bash > "$assets/force-bind.bash"
"$bin" --completions zsh > "$assets/_force-bind"
"$bin" --completions fish > "$assets/force-bind.fish"

# --no-build: cargo-deb would build without the static flags; --target makes it take
# the binary from target/$triple/release. It prints the path of the .deb.
cargo deb --no-build --target "$triple" --output target/debian/ --quiet "$@"
