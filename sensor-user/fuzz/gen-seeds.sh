#!/bin/sh
# Regenerates the committed seeds (corpus/<target>/seed-*) from the Rust sample generators
# in sensor-user/tests (artifact_gen.rs), so seeds and tests never drift apart.
set -eu
cd "$(dirname "$0")/.."
rm -f fuzz/corpus/*/seed-*
MW_DUMP_FUZZ_SEEDS="$PWD/fuzz/corpus" cargo test --test artifact_formats --test artifact_pickle dump_fuzz_seeds -- --ignored
ls fuzz/corpus
