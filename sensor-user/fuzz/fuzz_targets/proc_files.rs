//! Fuzz target: the /proc files the collector reads about other processes (DRM fdinfo,
//! mountinfo, cgroup). A process chooses what its fds point to and where it mounts things.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = modelwatch::telemetry::fdinfo::parse(&text);
    let _ = modelwatch::mounts::parse_mountinfo(&text);
    let _ = modelwatch::process::container_id(&text);
});
