//! Processes that got a watched device before the sensor started, or inherited its fd, still
//! have their ioctls counted (the per-process watch is seeded from /proc and follows forks).
//! Its own binary: the test process must not open the device after the sensor starts.

use std::{process::Command, time::Duration};

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, ioctl_count};

#[test]
fn preexisting_and_inherited_device_fds_are_counted() {
    // Opened before the sensor exists, and inheritable (no O_CLOEXEC).
    let c = std::ffi::CString::new("/dev/null").unwrap();
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    let mut sensor = RunningSensor::start("[devices]\nextra = [\"/dev/null\"]\ndrain_interval_ms = 100\n");
    let me = std::process::id();
    for _ in 0..300 {
        unsafe { libc::ioctl(fd, 0x4d59, 0) };
    }
    let child = Command::new(env!("CARGO_BIN_EXE_mw-worker"))
        .args(["--ioctl-fd", &fd.to_string(), "4d5a", "200"])
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success());
    sensor.wait_until("both counts", EVENT_TIMEOUT, |evs| {
        ioctl_count(evs, me, 0x4d59) >= 300 && ioctl_count(evs, child_pid, 0x4d5a) >= 200
    });
    std::thread::sleep(Duration::from_millis(300));
    let events = sensor.stop();
    assert_eq!(ioctl_count(&events, me, 0x4d59), 300, "seeded from /proc");
    assert_eq!(ioctl_count(&events, child_pid, 0x4d5a), 200, "inherited across fork");
    unsafe { libc::close(fd) };
}
