//! ioctl counting in the kernel: exact counts on a watched device, nothing on others.

use std::time::Duration;

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, ioctl_count, ioctl_counts, kind, pid, u64_of};
use serde_json::Value;

const WATCHED_CMD: u64 = 0x4d57;
const UNWATCHED_CMD: u64 = 0x4d58;
const N: u64 = 1000;

fn ioctls(path: &str, cmd: u64, n: u64) {
    let c = std::ffi::CString::new(path).unwrap();
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    for _ in 0..n {
        // /dev/null and /dev/zero reject unknown commands (ENOTTY); the syscall still happens.
        unsafe { libc::ioctl(fd, cmd as libc::c_ulong, 0) };
    }
    unsafe { libc::close(fd) };
}

#[test]
fn ioctls_on_a_watched_device_are_counted_exactly() {
    let mut sensor = RunningSensor::start("[devices]\nextra = [\"/dev/null\"]\ndrain_interval_ms = 100\n");
    let me = std::process::id();
    ioctls("/dev/null", WATCHED_CMD, N);
    ioctls("/dev/zero", UNWATCHED_CMD, N);
    sensor.wait_until("all ioctls counted", EVENT_TIMEOUT, |evs| ioctl_count(evs, me, WATCHED_CMD) >= N);
    // A few more drain intervals: nothing more may arrive.
    std::thread::sleep(Duration::from_millis(500));
    let events = sensor.stop();
    assert_eq!(ioctl_count(&events, me, WATCHED_CMD), N);
    // The first ioctl produced one immediate first-use event for this process and device.
    let first: Vec<&Value> = events
        .iter()
        .filter(|e| {
            kind(e) == "accelerator_activity" && pid(e) == Some(me) && e["accelerator_activity"]["first_use"] == true
        })
        .collect();
    assert_eq!(first.len(), 1, "{first:#?}");
    let a = &first[0]["accelerator_activity"];
    assert_eq!(u64_of(&a["first_command"]["cmd"]), WATCHED_CMD);
    assert_eq!(a["device"]["path"], "/dev/null");
    assert_eq!(a["device"]["kind"], "ACCELERATOR_KIND_CONFIGURED");
    assert_eq!((a["device"]["major"].as_u64(), a["device"]["minor"].as_u64()), (Some(1), Some(3)));
    // The unwatched device's command never shows up anywhere.
    assert!(!ioctl_counts(&events).any(|(_, cmd, _)| cmd == UNWATCHED_CMD));
    // Opening the watched device is reported as an accelerator open.
    assert!(events.iter().any(|e| kind(e) == "accelerator_opened"
        && pid(e) == Some(me)
        && e["accelerator_opened"]["device"]["path"] == "/dev/null"));
}
