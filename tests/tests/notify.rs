//! The service manager's notification protocol (sd_notify(3)), against a datagram socket the
//! test creates and hands over as `NOTIFY_SOCKET`, as systemd does for `Type=notify`:
//! READY=1 once every probe is attached and the event loop turns, a one-line STATUS=,
//! WATCHDOG=1 while the loop keeps answering when `WATCHDOG_USEC` asks for it, and
//! STOPPING=1 at the stop.

use std::{os::unix::net::UnixDatagram, time::Duration};

use modelwatch_tests::{RunningSensor, kind};

struct Manager {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: String,
}

impl Manager {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        // A bound on each wait, so a sensor that never notifies fails the test instead of
        // hanging it.
        socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Self { socket, path: path.to_str().unwrap().to_owned(), _dir: dir }
    }

    /// The next notification, as its lines.
    fn next(&self, waiting_for: &str) -> Vec<String> {
        let mut buf = vec![0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification while waiting for {waiting_for}: {e}"));
        String::from_utf8_lossy(&buf[..n]).lines().map(str::to_owned).collect()
    }

    /// Notifications until one has `line`; returns them all, that one last.
    fn until(&self, line: &str) -> Vec<Vec<String>> {
        let mut seen = Vec::new();
        loop {
            let m = self.next(line);
            let done = m.iter().any(|l| l == line);
            seen.push(m);
            if done {
                return seen;
            }
        }
    }
}

fn status_of(m: &[String]) -> Option<&str> {
    m.iter().find_map(|l| l.strip_prefix("STATUS="))
}

#[test]
fn ready_after_the_probes_attach_then_watchdog_while_the_loop_turns() {
    let manager = Manager::new();
    let mut sensor = RunningSensor::start_env("", &[("NOTIFY_SOCKET", &manager.path), ("WATCHDOG_USEC", "1000000")]);
    let first = manager.next("READY=1");
    assert!(first.iter().any(|l| l == "READY=1"), "the first notification is not READY: {first:?}");
    // The probes were attached by then: the status says how many, as the health event does.
    let health = sensor.wait_for("the health report", Duration::from_secs(5), |e| kind(e) == "sensor_health");
    let attached = health["sensor_health"]["probes_attached"].as_array().map_or(0, Vec::len);
    let status = status_of(&first).unwrap_or_else(|| panic!("no STATUS with READY: {first:?}"));
    assert!(status.contains(&format!("{attached} probes attached")), "{status}");
    assert!(!status.contains('\n'));
    // WATCHDOG_USEC=1 s: pings every half second, each one after the loop answered.
    for i in 0..3 {
        let m = manager.next("WATCHDOG=1");
        assert!(m.iter().any(|l| l == "WATCHDOG=1"), "ping {i}: {m:?}");
        assert!(status_of(&m).is_some_and(|s| s.contains("events")), "{m:?}");
    }
    sensor.stop();
    let rest = manager.until("STOPPING=1");
    assert!(!rest.is_empty());
}

#[test]
fn no_watchdog_pings_unless_asked() {
    let manager = Manager::new();
    let sensor = RunningSensor::start_env("", &[("NOTIFY_SOCKET", &manager.path)]);
    let first = manager.next("READY=1");
    assert!(first.iter().any(|l| l == "READY=1"), "{first:?}");
    sensor.stop();
    let rest = manager.until("STOPPING=1");
    assert!(rest.iter().flatten().all(|l| l != "WATCHDOG=1"), "{rest:?}");
}
