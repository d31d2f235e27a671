//! `modelwatch status`: a readable summary of the sensor's Status().

use std::{fmt::Write as _, process::ExitCode};

use anyhow::Context as _;

use crate::{api, cli::StatusArgs, output::human_bytes, proto::v1::SensorStatus};

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let rt = super::client_runtime()?;
    let status = rt.block_on(async {
        let mut client = api::connect(&args.socket).await?;
        let reply = client.status(crate::proto::v1::StatusRequest {}).await.context("Status")?;
        anyhow::Ok(reply.into_inner())
    })?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&status).context("encoding status")?);
    } else {
        print!("{}", text(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable form.
pub fn text(s: &SensorStatus) -> String {
    let mut o = String::new();
    let host = s.host.clone().unwrap_or_default();
    let up = s.uptime_seconds;
    let _ = writeln!(
        o,
        "modelwatch {} on {} (kernel {}), up {}h{:02}m{:02}s",
        host.agent_version,
        host.hostname,
        host.kernel,
        up / 3600,
        (up / 60) % 60,
        up % 60
    );
    let _ = writeln!(
        o,
        "backend:  {}, {} probes attached, {} skipped",
        s.backend,
        s.probes_attached.len(),
        s.probes_skipped.len()
    );
    for p in &s.probes_skipped {
        let _ = writeln!(o, "  skipped {p}");
    }
    let total: u64 = s.events_by_kind.values().sum();
    let _ = writeln!(o, "events:   {total} (last seq {})", s.last_seq);
    let mut kinds: Vec<_> = s.events_by_kind.iter().collect();
    kinds.sort();
    for (k, v) in kinds {
        let _ = writeln!(o, "  {k:<22} {v}");
    }
    let k = s.kernel.clone().unwrap_or_default();
    let _ = writeln!(
        o,
        "kernel:   produced {}, dropped {}, ioctls counted {}, paths truncated {}, read failures {}",
        k.produced, k.dropped, k.ioctls_counted, k.paths_truncated, k.read_failures
    );
    if k.pending_full + k.ioctl_counts_full + k.ioctl_gate_full > 0 {
        let _ = writeln!(
            o,
            "kernel maps full: pending syscalls {}, ioctl counts {}, ioctl gate {}",
            k.pending_full, k.ioctl_counts_full, k.ioctl_gate_full
        );
    }
    if !s.candidates_rejected.is_empty() || s.verdicts_from_cache > 0 {
        let kinds: Vec<String> = s.candidates_rejected.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            o,
            "not models: {} (candidates whose content was no model); verdicts from the persisted cache {}",
            if kinds.is_empty() { "none".to_owned() } else { kinds.join(" ") },
            s.verdicts_from_cache
        );
    }
    if k.model_reads_full + k.runtime_map_full + k.rate_map_full + k.nocmtime_full > 0 {
        let _ = writeln!(
            o,
            "kernel maps full: io_uring reads {}, runtime processes {}, rate limiter {}, timestamp-less writers {}",
            k.model_reads_full, k.runtime_map_full, k.rate_map_full, k.nocmtime_full
        );
    }
    let _ = writeln!(
        o,
        "held back: rate-limited records {}, runtime opens over budget {}, io_uring opens unresolved {}, verdicts dropped {}",
        k.rate_limited, k.runtime_budget, k.io_uring_unresolved, k.marks_invalidated
    );
    if s.decode_errors > 0 {
        let _ = writeln!(o, "decode errors: {}", s.decode_errors);
    }
    let _ = writeln!(
        o,
        "devices:  {}",
        if s.devices_watched.is_empty() { "none".into() } else { s.devices_watched.join(", ") }
    );
    let _ = writeln!(o, "nvml:     {}", if s.nvml.is_empty() { "-" } else { &s.nvml });
    let _ = writeln!(o, "clients:  {}", s.subscribers.len());
    for c in &s.subscribers {
        let _ = writeln!(o, "  #{} delivered {} dropped {}", c.id, c.delivered, c.dropped);
    }
    let _ = writeln!(o, "sinks:");
    let now = std::time::SystemTime::now();
    let age = |t: &Option<pbjson_types::Timestamp>| {
        t.as_ref().map_or_else(String::new, |t| {
            let then = std::time::UNIX_EPOCH + std::time::Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
            format!("{}s", now.duration_since(then).unwrap_or_default().as_secs())
        })
    };
    for k in &s.sinks {
        if k.destination.is_empty() {
            let _ = writeln!(
                o,
                "  {} written {} dropped {} failed {}{}",
                k.name,
                k.written,
                k.dropped,
                k.failed,
                if k.last_error.is_empty() { String::new() } else { format!(" ({})", k.last_error) }
            );
            continue;
        }
        // A network sink: delivery and its spool.
        let _ = writeln!(o, "  {} → {}", k.name, k.destination);
        let oldest = if k.pending_events == 0 { String::new() } else { format!(", oldest {}", age(&k.oldest_pending)) };
        let _ = writeln!(
            o,
            "    delivered {}, pending {} ({}){oldest}, retries {}",
            k.delivered,
            k.pending_events,
            human_bytes(k.pending_bytes),
            k.retries
        );
        let mut dropped: Vec<String> = vec![format!("queue {}", k.dropped)];
        let mut reasons: Vec<_> = k.spool_dropped.iter().collect();
        reasons.sort();
        dropped.extend(reasons.into_iter().map(|(r, n)| format!("{r} {n}")));
        let mut limited: Vec<_> = k.rate_limited.iter().collect();
        limited.sort();
        dropped.extend(limited.into_iter().map(|(kind, n)| format!("rate_limited {kind} {n}")));
        let _ = writeln!(o, "    dropped: {}", dropped.join(", "));
        let _ =
            writeln!(o, "    spool {} ({} on disk, {} spooled)", k.spool_dir, human_bytes(k.spool_bytes), k.written);
        if !k.spool_error.is_empty() {
            let _ = writeln!(o, "    SPOOL ERROR: {}", k.spool_error);
        }
        if !k.last_error.is_empty() {
            let _ = writeln!(o, "    last error ({} ago): {}", age(&k.last_error_time), k.last_error);
        }
    }
    let _ = writeln!(o, "memory:   {} RSS", human_bytes(s.rss_bytes));
    o
}
