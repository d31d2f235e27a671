#!/bin/sh
# Regenerates the committed seeds (corpus/<target>/seed-*) from the Rust sample generators
# in artifact/tests (generated.rs), so seeds and tests never drift apart.
set -eu
cd "$(dirname "$0")/.."
rm -f fuzz/corpus/*/seed-*
MW_DUMP_FUZZ_SEEDS="$PWD/fuzz/corpus" cargo test --test formats --test pickle dump_fuzz_seeds -- --ignored
ls fuzz/corpus
