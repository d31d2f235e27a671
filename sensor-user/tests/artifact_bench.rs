//! Hashing throughput, a measurement rather than a check (no timed assertions): run with
//!
//! ```sh
//! cargo test --release -p sensor-user --test artifact_bench -- --ignored --nocapture
//! ```
//!
//! `MW_BENCH_BYTES` sets the file size (default 1 GiB). The file is hashed once to warm the
//! page cache, then timed on one thread through the same streaming path the analyzer uses.

use std::time::Duration;

use modelwatch::artifact::bench::{hash_throughput, hash_throughput_memory, sha_extensions};

#[test]
#[ignore = "measurement: run in release mode with --ignored --nocapture"]
fn hash_throughput_page_cached_file() {
    let size: u64 = std::env::var("MW_BENCH_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(1 << 30);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blob");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).expect("create"));
        let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect();
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).expect("write");
            left -= n as u64;
        }
    }
    let t = hash_throughput(&path).expect("hash");
    assert_eq!(t.bytes, size);
    let m = hash_throughput_memory(64 << 20, Duration::from_secs(2));
    println!(
        "sha256 (sha2 crate, SHA extensions available: {}): file {:.2} GB/s ({} bytes in {:.3} s), memory {:.2} GB/s",
        sha_extensions(),
        t.gb_per_s(),
        t.bytes,
        t.seconds,
        m.gb_per_s()
    );
}
