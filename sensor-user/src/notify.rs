//! Telling the service manager how the sensor is (sd_notify(3), for systemd's `Type=notify`):
//! `READY=1` once every probe is attached and the event loop answers, `WATCHDOG=1` each time
//! the loop answers again while `WATCHDOG_USEC` asks for pings, `STATUS=` with a one-line
//! summary (what `systemctl status` shows), and `STOPPING=1` when a stop begins.
//!
//! The protocol is one datagram per notification on the socket `NOTIFY_SOCKET` names; the
//! `sd-notify` crate speaks it (abstract socket names included, `WATCHDOG_PID` honoured) with
//! nothing but libc underneath. Liveness is the event loop's, not this task's: each ping
//! follows an answer from the loop to a request on its own queue (the one `Status` uses), so
//! a loop that hangs stops the pings and systemd restarts the service.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::{
    bus::Bus,
    loader::KernelStats,
    output::human_bytes,
    status::{SharedStatus, StatsRequest},
};

/// How often the summary is refreshed when no watchdog asks for more.
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// How long the loop may take to answer before this round counts as missed.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Whether a service manager listens (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Notifies the service manager for as long as the returned task runs (abort it at the end).
/// Does nothing without `NOTIFY_SOCKET`.
pub fn spawn(
    stats: tokio::sync::mpsc::Sender<StatsRequest>,
    status: SharedStatus,
    bus: Bus,
) -> Option<tokio::task::JoinHandle<()>> {
    if !enabled() {
        return None;
    }
    let watchdog = sd_notify::watchdog_enabled();
    // sd_watchdog_enabled(3): ping at half the interval.
    let every = watchdog.map_or(STATUS_EVERY, |w| (w / 2).clamp(Duration::from_millis(100), STATUS_EVERY));
    Some(tokio::spawn(async move {
        let mut ready = false;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(kernel) = ask(&stats).await else {
                // No answer: no ping. The watchdog (if any) will act; say it once in a while.
                tracing::warn!("the event loop did not answer within {ANSWER_WITHIN:?}; no watchdog ping");
                continue;
            };
            let line = summary(&status, &kernel, &bus);
            let mut states = vec![NotifyState::Status(&line)];
            if !ready {
                states.push(NotifyState::Ready);
            } else if watchdog.is_some() {
                states.push(NotifyState::Watchdog);
            }
            match sd_notify::notify(&states) {
                Ok(()) => ready = true,
                Err(e) => tracing::warn!("cannot notify the service manager: {e}"),
            }
        }
    }))
}

/// Says that the sensor is stopping (before its final drain, which takes a moment).
pub fn stopping() {
    if enabled()
        && let Err(e) = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("stopping")])
    {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

/// Asks the event loop for its kernel counters: an answer shows it turns.
async fn ask(stats: &tokio::sync::mpsc::Sender<StatsRequest>) -> Option<KernelStats> {
    let ask = async {
        let (reply, rx) = tokio::sync::oneshot::channel();
        stats.send(reply).await.ok()?;
        rx.await.ok()
    };
    tokio::time::timeout(ANSWER_WITHIN, ask).await.ok()?
}

/// The one-line summary: probes, devices, events, losses, memory.
fn summary(status: &SharedStatus, kernel: &KernelStats, bus: &Bus) -> String {
    let (attached, skipped, devices) = status
        .lock()
        .map(|s| (s.probes_attached.len(), s.probes_skipped.len(), s.devices_watched.len()))
        .unwrap_or_default();
    format_summary(attached, skipped, devices, bus.last_seq(), kernel.dropped_total(), crate::sensor::rss_bytes())
}

fn format_summary(attached: usize, skipped: usize, devices: usize, events: u64, dropped: u64, rss: u64) -> String {
    let skipped = if skipped > 0 { format!(" ({skipped} skipped)") } else { String::new() };
    format!(
        "{attached} probes attached{skipped}, {devices} accelerators watched; {events} events, {dropped} kernel records dropped; {} RSS",
        human_bytes(rss)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_summary_is_one_line() {
        let s = super::format_summary(9, 1, 2, 1234, 0, 30 << 20);
        assert_eq!(
            s,
            "9 probes attached (1 skipped), 2 accelerators watched; 1234 events, 0 kernel records dropped; 30.0 MiB RSS"
        );
    }
}
