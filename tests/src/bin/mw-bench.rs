//! The measuring side of `cargo xtask bench`, built in release mode: syscall loops pinned to
//! one CPU and timed with that thread's CPU clock, an event generator with a target rate, and
//! the hashing throughput, and the empty programs on the probes' attach points (the kernel's own
//! cost of the tracepoints). Prints one JSON object; xtask orchestrates and reports.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

fn usage() -> ! {
    eprintln!(
        "usage: mw-bench loops CPU DIR SCALE | mw-bench generate CPU FILE RATE SECONDS | mw-bench hash FILE \
         | mw-bench baseline"
    );
    std::process::exit(2)
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            panic!("sched_setaffinity({cpu}): {}", std::io::Error::last_os_error());
        }
    }
}

/// CPU time of this thread, ns (user + system: syscalls and the probes they run are in it).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("path")
}

fn open_ro(p: &Path) -> i32 {
    let c = cpath(p);
    // SAFETY: valid path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open {}: {}", p.display(), std::io::Error::last_os_error());
    fd
}

/// ns of CPU per iteration of `f`.
fn measure(iters: u64, mut f: impl FnMut()) -> f64 {
    // Warm up caches and the kernel's paths.
    for _ in 0..iters / 20 {
        f();
    }
    let t0 = thread_cpu_ns();
    for _ in 0..iters {
        f();
    }
    (thread_cpu_ns() - t0) as f64 / iters as f64
}

fn loops(cpu: usize, dir: &Path, scale: f64) -> Value {
    pin(cpu);
    let n = |base: f64| (base * scale).max(1000.0) as u64;
    let small = cpath(&dir.join("small.txt"));
    let gguf = cpath(&dir.join("model.gguf"));
    let big = open_ro(&dir.join("sparse-1g.bin"));
    let open_close = |c: &CString| {
        // SAFETY: valid path; the fd is closed at once.
        unsafe {
            let fd = libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            libc::close(fd);
        }
    };
    let mut result = serde_json::Map::new();
    // SAFETY (all closures): plain syscalls on fds and paths this process owns.
    result.insert(
        "getppid".into(),
        json!(measure(n(2_000_000.0), || unsafe {
            libc::getppid();
        })),
    );
    result.insert("open_close_small".into(), json!(measure(n(200_000.0), || open_close(&small))));
    // An open with write access: the kernel also drops any verdict about the file's content.
    result.insert(
        "open_close_small_write".into(),
        json!(measure(n(200_000.0), || unsafe {
            let fd = libc::open(small.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            libc::close(fd);
        })),
    );
    result.insert("open_close_gguf".into(), json!(measure(n(100_000.0), || open_close(&gguf))));
    result.insert(
        "mmap_munmap_1g".into(),
        json!(measure(n(100_000.0), || unsafe {
            let a = libc::mmap(std::ptr::null_mut(), 1 << 30, libc::PROT_READ, libc::MAP_PRIVATE, big, 0);
            libc::munmap(a, 1 << 30);
        })),
    );
    // An io_uring read of an ordinary file: every completion passes the io_uring probe.
    {
        let fd = open_ro(&dir.join("small.txt"));
        let mut ring = io_uring::IoUring::new(8).expect("io_uring_setup");
        let mut buf = [0u8; 16];
        let read =
            io_uring::opcode::Read::new(io_uring::types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32).offset(0).build();
        result.insert(
            "io_uring_read_small".into(),
            json!(measure(n(200_000.0), || {
                // SAFETY: buf outlives the wait for the completion.
                unsafe { ring.submission().push(&read).expect("sq full") };
                ring.submit_and_wait(1).expect("io_uring_enter");
                ring.completion().next();
            })),
        );
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
    }
    // The bench watches /dev/full (a device no other process holds). Unwatched first: once
    // this process holds the watched device its ioctls are all looked at (that is the point of
    // the per-process gate), so the order matters.
    let zero = open_ro(Path::new("/dev/zero"));
    result.insert(
        "ioctl_unwatched".into(),
        json!(measure(n(1_000_000.0), || unsafe {
            libc::ioctl(zero, 0x4d57, 0);
        })),
    );
    let full = open_ro(Path::new("/dev/full"));
    result.insert(
        "ioctl_watched".into(),
        json!(measure(n(1_000_000.0), || unsafe {
            libc::ioctl(full, 0x4d57, 0);
        })),
    );
    // SAFETY: closing our own fds.
    unsafe {
        libc::close(big);
        libc::close(full);
        libc::close(zero);
    }
    Value::Object(result)
}

/// Opens FILE at RATE opens per second for SECONDS (0 rate: as fast as possible).
fn generate(cpu: usize, file: &Path, rate: f64, seconds: f64) -> Value {
    pin(cpu);
    let c = cpath(file);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut opens: u64 = 0;
    // Pace in 1 ms slices: open what the slice is due, then wait for the next.
    let per_slice = if rate > 0.0 { (rate / 1000.0).max(1.0) } else { f64::INFINITY };
    let mut due = 0.0f64;
    let mut next = start;
    while Instant::now() < end {
        due += per_slice;
        let target = if per_slice.is_finite() { due.floor() as u64 } else { opens + 1000 };
        while opens < target {
            // SAFETY: valid path; closed at once.
            unsafe {
                let fd = libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                libc::close(fd);
            }
            opens += 1;
        }
        if per_slice.is_finite() {
            next += Duration::from_millis(1);
            while Instant::now() < next {
                std::hint::spin_loop();
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    json!({ "opens": opens, "seconds": secs, "rate": opens as f64 / secs })
}

/// Hashing throughput of the analyzer's streaming SHA-256 (the artifact library alone): a
/// page-cached file and an in-memory buffer.
fn hash(file: &Path) -> Value {
    let (bytes, seconds) = hash_throughput(file).expect("hash");
    let (mem_bytes, mem_seconds) = hash_throughput_memory(64 << 20, Duration::from_secs(2));
    json!({
        "file_bytes": bytes, "file_seconds": seconds, "file_gb_per_s": gb_per_s(bytes, seconds),
        "memory_gb_per_s": gb_per_s(mem_bytes, mem_seconds), "sha_extensions": sha_extensions(),
    })
}

fn gb_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 { bytes as f64 / seconds / 1e9 } else { 0.0 }
}

/// Whether the CPU has SHA extensions that `sha2` will use.
fn sha_extensions() -> bool {
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
fn hash_throughput(path: &Path) -> std::io::Result<(u64, f64)> {
    let mut f = std::fs::File::open(path)?;
    modelwatch_artifact::digest::sha256_reader(&mut f)?;
    let mut f = std::fs::File::open(path)?;
    let t = Instant::now();
    let (_, bytes) = modelwatch_artifact::digest::sha256_reader(&mut f)?;
    Ok((bytes, t.elapsed().as_secs_f64()))
}

/// Hashes an in-memory buffer of `size` bytes repeatedly for at least `min_time`.
fn hash_throughput_memory(size: usize, min_time: Duration) -> (u64, f64) {
    let buf: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31)).collect();
    let t = Instant::now();
    let mut bytes = 0u64;
    while t.elapsed() < min_time || bytes == 0 {
        std::hint::black_box(modelwatch_artifact::digest::sha256_bytes(std::hint::black_box(&buf)));
        bytes += size as u64;
    }
    (bytes, t.elapsed().as_secs_f64())
}

/// Empty programs with the probes' names, built by this crate's build script.
static EMPTY_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/modelwatch-empty-probes"));

/// Attaches the empty programs to every attach point the sensor uses and holds them until
/// killed (SIGTERM's default action ends the process; the kernel detaches with the last fd).
fn baseline() -> ! {
    let btf = Path::new(modelwatch::offsets::VMLINUX_BTF);
    let (_ebpf, attached) = modelwatch::loader::load_on_probe_points(EMPTY_OBJECT, btf).expect("attach");
    println!("attached {} empty programs", attached.len());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let out = match a.get(1).map(String::as_str) {
        Some("loops") if a.len() == 5 => loops(
            a[2].parse().unwrap_or_else(|_| usage()),
            &PathBuf::from(&a[3]),
            a[4].parse().unwrap_or_else(|_| usage()),
        ),
        Some("generate") if a.len() == 6 => generate(
            a[2].parse().unwrap_or_else(|_| usage()),
            Path::new(&a[3]),
            a[4].parse().unwrap_or_else(|_| usage()),
            a[5].parse().unwrap_or_else(|_| usage()),
        ),
        Some("hash") if a.len() == 3 => hash(Path::new(&a[2])),
        Some("baseline") if a.len() == 2 => baseline(),
        _ => usage(),
    };
    println!("{out}");
}
