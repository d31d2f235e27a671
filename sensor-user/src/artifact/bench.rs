//! Hashing throughput, for `cargo xtask bench` and BENCHMARKS.md.
//!
//! The target is at least 1 GB/s per core on page-cached data; [`hash_throughput`] measures the
//! real path (the same streaming function the analyzer uses, reading the file through the page
//! cache), [`hash_throughput_memory`] the SHA-256 implementation alone.

use std::{
    io,
    path::Path,
    time::{Duration, Instant},
};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    pub bytes: u64,
    pub seconds: f64,
}

impl Throughput {
    /// Decimal gigabytes per second.
    pub fn gb_per_s(&self) -> f64 {
        if self.seconds > 0.0 { self.bytes as f64 / self.seconds / 1e9 } else { 0.0 }
    }
}

/// Whether the CPU has SHA extensions that `sha2` will use.
pub fn sha_extensions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha") && std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Hashes `path` once to warm the page cache, then again timed, on one thread.
pub fn hash_throughput(path: &Path) -> io::Result<Throughput> {
    let mut f = std::fs::File::open(path)?;
    super::digest::sha256_reader(&mut f)?;
    let mut f = std::fs::File::open(path)?;
    let t = Instant::now();
    let (_, bytes) = super::digest::sha256_reader(&mut f)?;
    Ok(Throughput { bytes, seconds: t.elapsed().as_secs_f64() })
}

/// Hashes an in-memory buffer of `size` bytes repeatedly for at least `min_time`.
pub fn hash_throughput_memory(size: usize, min_time: Duration) -> Throughput {
    let buf: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31)).collect();
    let t = Instant::now();
    let mut bytes = 0u64;
    while t.elapsed() < min_time || bytes == 0 {
        std::hint::black_box(super::digest::sha256_bytes(std::hint::black_box(&buf)));
        bytes += size as u64;
    }
    Throughput { bytes, seconds: t.elapsed().as_secs_f64() }
}
