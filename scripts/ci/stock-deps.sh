#!/usr/bin/env bash
# Stock dependencies: the library crates build and pass their tests against burn and burn-flex
# exactly as published (no `[patch.crates-io]`), and a crate outside the workspace can use them.
#
# 1. Copies the tracked files, without patches/, to $STOCK_DEPS_DIR (a fixed directory, so
#    that cargo's fingerprints and the shared $CARGO_TARGET_DIR stay warm between runs),
#    deletes the root Cargo.toml's `[patch.crates-io]` section (failing if there is none), and
#    checks that Cargo.lock then changes only in burn-flex coming from crates.io.
# 2. There: `cargo test` of diffusion-core, diffusion-nets and diffusion-train; `cargo check`
#    of diffusion-nets and diffusion-train without default features (the GPU-only build), and
#    that their dependency trees then hold no burn-flex (and diffusion-nets' no rayon or pulp
#    either; diffusion-train gets those through faer, diffusion-eval's linear algebra).
# 3. examples/as-dependency (in the copy: no patch applies to it either), its Cargo.lock
#    seeded from the root one so that it resolves to the same versions: trains two steps and
#    samples.
#
# Run from anywhere; CI bounds it with `timeout` (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/burn-diffusion/target}"
copy="${STOCK_DEPS_DIR:-$HOME/.cache/burn-diffusion/stock-deps}"
start=$(date +%s)
say() { printf '[stock-deps %ds] %s\n' $(($(date +%s) - start)) "$*"; }

# --- 1. The copy -------------------------------------------------------------------------
say "copying the tracked files (without patches/) to $copy"
rm -rf "$copy"
mkdir -p "$copy"
# tar keeps the files' modification times, which cargo's fingerprints compare.
git ls-files -z | grep -zv '^patches/' | tar --null -T - -cf - | tar -xf - -C "$copy"
cd "$copy"

awk '
    /^\[patch\.crates-io\]/ { skip = 1; found = 1; next }
    /^\[/ { skip = 0 }
    !skip { print }
    END { if (!found) exit 3 }
' "$repo/Cargo.toml" >Cargo.toml || {
    echo "stock-deps: no [patch.crates-io] section in Cargo.toml: update this script" >&2
    exit 1
}
if grep -rn --include=Cargo.toml --include=config.toml '^\[patch' . .cargo 2>/dev/null; then
    echo "stock-deps: a [patch] section is left in the copy (above)" >&2
    exit 1
fi
say "removed [patch.crates-io]; resolving burn-flex from crates.io"
cargo metadata --format-version 1 >/dev/null
# Cargo keeps every other locked version: the only change is burn-flex's source and checksum.
changes=$(diff "$repo/Cargo.lock" Cargo.lock | grep '^[<>]' || true)
if [ "$(grep -c . <<<"$changes")" != 2 ] \
    || ! grep -q '^> source = "registry+https://github.com/rust-lang/crates.io-index"$' <<<"$changes" \
    || ! grep -q '^> checksum = ' <<<"$changes"; then
    echo "stock-deps: Cargo.lock changed beyond burn-flex's source:" >&2
    diff "$repo/Cargo.lock" Cargo.lock >&2 || true
    exit 1
fi
cargo tree -p diffusion-nets -i burn-flex -e normal --depth 0

# --- 2. The library crates against stock burn-flex --------------------------------------
say "cargo test -p diffusion-core -p diffusion-nets -p diffusion-train"
cargo test -p diffusion-core -p diffusion-nets -p diffusion-train

say "cargo check -p diffusion-nets -p diffusion-train --no-default-features"
cargo check -p diffusion-nets -p diffusion-train --no-default-features
# diffusion-nets compiles none of them; diffusion-train no burn-flex (rayon and pulp reach it
# through diffusion-eval's linear algebra, faer, which needs them on every backend).
gpu_only=$( (cargo tree -p diffusion-nets --no-default-features -e normal,build --prefix none \
    | grep -E '^(burn-flex|rayon|pulp) '; cargo tree -p diffusion-train --no-default-features \
    -e normal,build --prefix none | grep -E '^burn-flex ') || true)
if [ -n "$gpu_only" ]; then
    echo "stock-deps: without default features these are still compiled:" >&2
    sort -u <<<"$gpu_only" >&2
    exit 1
fi

# --- 3. A dependent outside the workspace ------------------------------------------------
say "examples/as-dependency: cargo run"
cp Cargo.lock examples/as-dependency/Cargo.lock
cargo run --manifest-path examples/as-dependency/Cargo.toml
grep -A2 '^name = "burn-flex"$' examples/as-dependency/Cargo.lock | grep -q '^source = "registry+' || {
    echo "stock-deps: the example did not take burn-flex from crates.io" >&2
    exit 1
}
say "done"
