//! Rendering events for people and machines: one JSON object per line (the proto3 JSON
//! mapping, proto field names, or OCSF through [`crate::ocsf`]) or one compact, optionally
//! coloured, line per event.
//!
//! Strings in events come from files and processes an attacker may control, so the compact
//! form escapes control characters and Unicode format controls (bidirectional overrides and
//! isolates, zero-width characters): a file name must not be able to rewrite the analyst's
//! terminal, nor reorder what a line shows. File names that are not UTF-8 are shown from their
//! exact bytes, each invalid byte as `\xNN`.

use std::fmt::Write as _;

pub use modelwatch_artifact::size::human_bytes;

use crate::proto::v1::{
    AcceleratorKind, ApprovalVerdict, ArtifactFormat, DigestState, Event, FileRef, HealthState, IoctlCategory,
    LossSource, MatchReason, PickleVerdict, SessionEndReason, SessionEngine, Severity, SignatureVerdict,
    event::Payload,
};

/// Output format of the CLI and of stdout/file sinks.
pub use crate::config::OutputFormat;

/// One JSON line (no trailing newline).
pub fn json_line(ev: &Event) -> String {
    let mut buf = Vec::with_capacity(1024);
    write_json(&mut buf, ev);
    String::from_utf8(buf).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Appends `ev` as one line of JSON (no newline) to `buf`: the same text serde_json writes
/// (a schema test holds them equal), through sonic-rs: serde_json's byte-at-a-time string
/// escaping alone was 13-17 % of the collector's CPU under load, sonic-rs's whole
/// serialisation is 11 % (BENCHMARKS.md, performance pass).
pub fn write_json(buf: &mut Vec<u8>, ev: &Event) {
    let start = buf.len();
    // Serialising generated types into memory cannot fail: no maps with non-string keys and no
    // I/O. Fall back to an error object rather than panicking, in case that ever changes.
    if let Err(e) = sonic_rs::to_writer(&mut *buf, ev) {
        buf.truncate(start);
        buf.extend_from_slice(serde_json::json!({ "error": e.to_string() }).to_string().as_bytes());
    }
}

/// Renders `ev` in `format` (no trailing newline).
pub fn render(ev: &Event, format: OutputFormat, color: bool) -> String {
    match format {
        OutputFormat::Json => json_line(ev),
        OutputFormat::Compact => compact_line(ev, color),
        OutputFormat::Ocsf => crate::ocsf::json_line(ev),
    }
}

/// Unicode format controls (general category Cf) and the line and paragraph separators:
/// invisible, and some (U+202E RIGHT-TO-LEFT OVERRIDE, the isolates U+2066–U+2069) reorder the
/// text that follows them on a terminal.
fn is_format_control(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// Escapes control characters and DEL (`\x1b`) and Unicode format controls (`\u{202e}`).
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else if is_format_control(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// [`sanitize`] for text of several lines: each line on its own, the line breaks kept (a
/// TOML error's caret line, a configuration shown as TOML).
pub fn sanitize_lines(s: &str) -> String {
    s.split('\n').map(sanitize).collect::<Vec<_>>().join("\n")
}

/// A file's path for display: its exact bytes when they are not UTF-8 (each invalid byte as
/// `\xNN`, which [`sanitize`] keeps as text), else the path.
pub fn display_path(f: &FileRef) -> String {
    if f.path_bytes.is_empty() {
        return f.path.clone();
    }
    let mut out = String::with_capacity(f.path_bytes.len());
    for chunk in f.path_bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The first `n` characters (ids come from captures too: never slice them by bytes).
fn prefix(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn short(s: &str, max: usize) -> String {
    let s = sanitize(s);
    if s.chars().count() <= max {
        s
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe as i64 + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The compact line's time: date, time to the millisecond and the zone, UTC (`Z`), so that
/// lines of a capture from another day or another host's zone read unambiguously.
fn date_time(ts: &Option<pbjson_types::Timestamp>) -> String {
    const NONE: &str = "---------- --:--:--.---Z";
    let Some(ts) = ts else { return NONE.into() };
    let (days, secs) = (ts.seconds.div_euclid(86_400), ts.seconds.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return NONE.into();
    }
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        ts.nanos.clamp(0, 999_999_999) / 1_000_000
    )
}

/// Short enum names for the compact form: the proto name without its prefix, lower case.
fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_ascii_lowercase()
}

macro_rules! enum_str {
    ($t:ty, $v:expr, $prefix:literal) => {
        <$t>::try_from($v).map(|e| enum_name(e.as_str_name(), $prefix)).unwrap_or_else(|_| $v.to_string())
    };
}

pub fn format_name(v: i32) -> String {
    enum_str!(ArtifactFormat, v, "ARTIFACT_FORMAT_")
}

fn reasons(rs: &[i32]) -> String {
    rs.iter().map(|r| enum_str!(MatchReason, *r, "MATCH_REASON_")).collect::<Vec<_>>().join(",")
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_owned() }
    }
}

/// The compact line: `time kind pid/comm facts`.
pub fn compact_line(ev: &Event, color: bool) -> String {
    let st = Style { on: color };
    let (label, code, facts) = facts(ev);
    // Every field came from outside (kernel, files, captures): none may steer the terminal.
    let facts = sanitize(&facts);
    let who = match &ev.process {
        Some(p) => format!("{}/{}", p.pid, short(&p.comm, 16)),
        None => "-".into(),
    };
    let sev = if ev.severity >= Severity::Medium as i32 {
        format!(" {}", st.paint("1;31", &enum_str!(Severity, ev.severity, "SEVERITY_").to_uppercase()))
    } else {
        String::new()
    };
    format!("{} {:<10} {:<22} {}{}", st.paint("2", &date_time(&ev.event_time)), st.paint(code, label), who, facts, sev)
}

fn facts(ev: &Event) -> (&'static str, &'static str, String) {
    let Some(payload) = &ev.payload else { return ("?", "0", String::new()) };
    match payload {
        Payload::ProcessExec(e) => {
            let p = ev.process.clone().unwrap_or_default();
            let args = short(&p.cmdline.join(" "), 100);
            let exe = if p.exe.is_empty() { &e.filename } else { &p.exe };
            ("exec", "36", format!("{} [{}] user={}", short(exe, 80), args, short(&p.user, 32)))
        }
        Payload::ProcessFork(f) => ("fork", "36", format!("child={}", f.child_pid)),
        Payload::ProcessExit(x) => {
            let how = if x.signal != 0 {
                format!("signal={}{}", x.signal, if x.core_dumped { " (core)" } else { "" })
            } else {
                format!("code={}", x.exit_code)
            };
            ("exit", "36", format!("{how} after {:.3}s", x.duration_ns as f64 / 1e9))
        }
        Payload::ModelFileOpened(o) => {
            let f = o.file.clone().unwrap_or_default();
            let mut s = format!("{} {} {}", short(&display_path(&f), 120), human_bytes(f.size), o.access);
            if !f.requested_path.is_empty() && f.requested_path != f.path {
                let _ = write!(s, " via {}", short(&f.requested_path, 80));
            }
            if let Some(a) = &o.artifact {
                let _ = write!(
                    s,
                    " [{}{}]",
                    format_name(a.format),
                    if a.name.is_empty() { String::new() } else { format!(" {}", short(&a.name, 40)) }
                );
            }
            let _ = write!(s, " ({})", reasons(&o.reasons));
            ("open", "32", s)
        }
        Payload::ModelMapped(m) => {
            let f = m.file.clone().unwrap_or_default();
            let prot = format!(
                "{}{}{}",
                if m.prot & 1 != 0 { "r" } else { "-" },
                if m.prot & 2 != 0 { "w" } else { "-" },
                if m.prot & 4 != 0 { "x" } else { "-" }
            );
            let mut s = format!("{} len={} {prot}", short(&display_path(&f), 120), human_bytes(m.length));
            if !m.runtime_library.is_empty() {
                let _ = write!(s, " runtime={}", short(&m.runtime_library, 40));
            }
            let _ = write!(s, " ({})", reasons(&m.reasons));
            ("mmap", "32", s)
        }
        Payload::ModelRead(r) => {
            let f = r.file.clone().unwrap_or_default();
            let path = if f.path.is_empty() { format!("inode {}", f.inode) } else { short(&f.path, 120) };
            let mut s = format!("{path} {} read via {}", human_bytes(r.bytes), r.via);
            if let Some(a) = &r.artifact {
                let _ = write!(
                    s,
                    " [{}{}]",
                    format_name(a.format),
                    if a.name.is_empty() { String::new() } else { format!(" {}", short(&a.name, 40)) }
                );
            }
            ("read", "32", s)
        }
        Payload::ArtifactIdentified(a) => {
            let f = a.file.clone().unwrap_or_default();
            let art = a.artifact.clone().unwrap_or_default();
            let md = a.metadata.clone().unwrap_or_default();
            let mut s = format!("{} {}", short(&display_path(&f), 100), format_name(art.format));
            if !md.name.is_empty() {
                let _ = write!(s, " \"{}\"", short(&md.name, 60));
            }
            if !md.quantization.is_empty() {
                let _ = write!(s, " {}", short(&md.quantization, 16));
            }
            if !art.sha256.is_empty() {
                // The schema's VERIFIED means computed: "verified" only where a claim was compared.
                let state = if art.digest_state == DigestState::Verified as i32 && a.claimed_sha256.is_empty() {
                    "computed".to_owned()
                } else {
                    enum_str!(DigestState, art.digest_state, "DIGEST_STATE_")
                };
                let _ = write!(s, " sha256={}…({state})", prefix(&art.sha256, 12));
            }
            if !art.digest_skipped_reason.is_empty() {
                let _ = write!(s, " digest=skipped({})", short(&art.digest_skipped_reason, 16));
            }
            let _ = write!(s, " approval={}", enum_str!(ApprovalVerdict, art.approval, "APPROVAL_VERDICT_"));
            if art.pickle != 0 {
                let _ = write!(s, " pickle={}", enum_str!(PickleVerdict, art.pickle, "PICKLE_VERDICT_"));
            }
            if !art.license.is_empty() {
                let _ = write!(s, " license={}", short(&art.license, 32));
            }
            if let Some(sig) = &a.signature {
                let _ = write!(s, " signature={}", enum_str!(SignatureVerdict, sig.verdict, "SIGNATURE_VERDICT_"));
                let by = if sig.identity.is_empty() { &sig.trusted_as } else { &sig.identity };
                if !by.is_empty() {
                    let _ = write!(s, "({})", short(by, 48));
                }
                if !sig.mismatched_file.is_empty() {
                    let _ = write!(s, " differs={}", short(&sig.mismatched_file, 60));
                }
            }
            ("artifact", "35", s)
        }
        Payload::PolicyFinding(p) => {
            let f = p.file.clone().unwrap_or_default();
            let fd = p.finding.clone().unwrap_or_default();
            ("FINDING", "1;31", format!("{} {}: {}", short(&display_path(&f), 100), fd.code, short(&fd.message, 160)))
        }
        Payload::AcceleratorOpened(o) => {
            let d = o.device.clone().unwrap_or_default();
            (
                "accel-open",
                "33",
                format!("{} {} {}", d.path, d.driver, enum_str!(AcceleratorKind, d.kind, "ACCELERATOR_KIND_")),
            )
        }
        Payload::AcceleratorActivity(a) => {
            let d = a.device.clone().unwrap_or_default();
            if a.first_use {
                let c = a.first_command.clone().unwrap_or_default();
                let name = if c.name.is_empty() { format!("{:#x}", c.cmd) } else { c.name };
                return (
                    "accel",
                    "33",
                    format!(
                        "{} first use: {name} ({})",
                        d.path,
                        enum_str!(IoctlCategory, c.category, "IOCTL_CATEGORY_")
                    ),
                );
            }
            let cats: Vec<String> = a
                .categories
                .iter()
                .map(|c| format!("{}={}", enum_str!(IoctlCategory, c.category, "IOCTL_CATEGORY_"), c.count))
                .collect();
            ("accel", "33", format!("{} ioctls={} {}", d.path, a.total, cats.join(" ")))
        }
        Payload::SessionStarted(s) => {
            let models: Vec<String> = s
                .models
                .iter()
                .map(|m| {
                    let name = m.artifact.as_ref().map(|a| a.name.clone()).filter(|n| !n.is_empty());
                    name.unwrap_or_else(|| m.file.as_ref().map(display_path).unwrap_or_default())
                })
                .map(|n| short(&n, 60))
                .collect();
            let devs: Vec<String> = s.accelerators.iter().map(|a| a.path.clone()).collect();
            (
                "session+",
                "1;32",
                format!(
                    "{} {} on {} models=[{}] confidence={:.2}{}",
                    prefix(&s.session_id, 8),
                    enum_str!(SessionEngine, s.engine, "SESSION_ENGINE_"),
                    if devs.is_empty() { "cpu".into() } else { devs.join(",") },
                    models.join(", "),
                    s.confidence,
                    if s.runtime.is_empty() { String::new() } else { format!(" runtime={}", s.runtime) }
                ),
            )
        }
        Payload::SessionUpdated(s) => {
            let u = s.interval.clone().unwrap_or_default();
            (
                "session~",
                "32",
                format!(
                    "{} sm={:.0}% gpumem={} cpu={:.0}% ioctl/s={:.0} mapped={}",
                    prefix(&s.session_id, 8),
                    u.gpu_sm_percent_avg,
                    human_bytes(u.gpu_memory_bytes),
                    u.cpu_percent,
                    u.ioctl_rate,
                    human_bytes(u.model_bytes_mapped)
                ),
            )
        }
        Payload::SessionEnded(s) => {
            let t = s.total.clone().unwrap_or_default();
            (
                "session-",
                "1;32",
                format!(
                    "{} {} after {:.1}s sm_avg={:.0}% gpumem_peak={} cpu={:.2}s",
                    prefix(&s.session_id, 8),
                    enum_str!(SessionEndReason, s.reason, "SESSION_END_REASON_"),
                    s.duration_ns as f64 / 1e9,
                    t.gpu_sm_percent_avg,
                    human_bytes(t.gpu_memory_peak_bytes),
                    t.cpu_time_ns as f64 / 1e9
                ),
            )
        }
        Payload::SensorHealth(h) => {
            let k = h.kernel.clone().unwrap_or_default();
            (
                "health",
                "34",
                format!(
                    "{} probes={} kernel produced={} dropped={} nvml={}{}",
                    enum_str!(HealthState, h.state, "HEALTH_STATE_"),
                    h.probes_attached.len(),
                    k.produced,
                    k.dropped,
                    short(&h.nvml, 60),
                    if h.message.is_empty() { String::new() } else { format!(" ({})", short(&h.message, 120)) }
                ),
            )
        }
        Payload::EventsLost(l) => {
            let mut s = format!(
                "{} events lost ({}) {}",
                l.count,
                enum_str!(LossSource, l.source, "LOSS_SOURCE_"),
                short(&l.detail, 120)
            );
            for c in l.culprits.iter().take(5) {
                let _ = write!(s, "; {}/{} uid={} {}", c.pid, short(&c.comm, 16), c.uid, c.count);
            }
            ("LOST", "1;31", s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{ModelFileOpened, Process};

    #[test]
    fn json_lines_are_serde_json_text_for_hostile_strings() {
        let nasty = "\"q\" \\b\\ \u{0}\u{1}\u{1f}\u{7f} \u{2028}\u{2029} \u{202e}é😀 </script> \t\r\n";
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 64, 100] {
            let s: String = nasty.chars().cycle().take(len).collect();
            let ev = Event {
                event_id: s.clone(),
                process: Some(Process { comm: s.clone(), cmdline: vec![s.clone(), s.clone()], ..Default::default() }),
                payload: Some(Payload::ModelFileOpened(ModelFileOpened {
                    file: Some(FileRef { path: s.clone(), ..Default::default() }),
                    ..Default::default()
                })),
                ..Default::default()
            };
            assert_eq!(json_line(&ev), serde_json::to_string(&ev).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(sanitize("a\x1b[2Jb\n"), "a\\x1b[2Jb\\x0a");
        let ev = Event {
            process: Some(Process { pid: 1, comm: "x\x07".into(), ..Default::default() }),
            payload: Some(Payload::ModelFileOpened(ModelFileOpened {
                file: Some(FileRef { path: "/tmp/\x1b]0;pwned\x07.gguf".into(), size: 5 << 20, ..Default::default() }),
                access: "read".into(),
                reasons: vec![MatchReason::Extension as i32],
                ..Default::default()
            })),
            ..Default::default()
        };
        let line = compact_line(&ev, false);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains("5.0 MiB") && line.contains("(extension)"), "{line}");
        let colored = compact_line(&ev, true);
        assert!(colored.contains("\x1b[32mopen"), "{colored:?}");
        // Fields printed without shortening, and ids shorter or wider than expected.
        let ev = Event {
            payload: Some(Payload::AcceleratorOpened(crate::proto::v1::AcceleratorOpened {
                device: Some(crate::proto::v1::Accelerator {
                    path: "/dev/\x1b[31mnv".into(),
                    driver: "d\u{9b}x".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let line = compact_line(&ev, false);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        for id in ["é", "ééééééééé", ""] {
            let ev = Event {
                payload: Some(Payload::SessionUpdated(crate::proto::v1::InferenceSessionUpdated {
                    session_id: id.into(),
                    ..Default::default()
                })),
                ..Default::default()
            };
            assert!(compact_line(&ev, false).contains(&prefix(id, 8)));
        }
    }

    #[test]
    fn lines_show_the_date_and_the_zone() {
        let ev = |t: Option<(i64, i32)>| Event {
            event_time: t.map(|(seconds, nanos)| pbjson_types::Timestamp { seconds, nanos }),
            payload: Some(Payload::ProcessExit(crate::proto::v1::ProcessExit::default())),
            ..Default::default()
        };
        // 2026-12-04T13:40:47.123456789Z
        let line = compact_line(&ev(Some((1_796_391_647, 123_456_789))), false);
        assert!(line.starts_with("2026-12-04 13:40:47.123Z exit "), "{line}");
        let line = compact_line(&ev(Some((-1, 0))), false);
        assert!(line.starts_with("1969-12-31 23:59:59.000Z "), "{line}");
        let width = "2026-12-04 13:40:47.123Z".len();
        for t in [None, Some((i64::MAX, 0)), Some((i64::MIN, 0))] {
            let line = compact_line(&ev(t), false);
            assert!(line.starts_with("---------- --:--:--.---Z "), "{line}");
            assert_eq!(line.find(" exit"), Some(width), "{line}");
        }
    }

    #[test]
    fn verified_only_where_a_claim_was_compared() {
        use crate::proto::v1::{ArtifactIdentified, ArtifactSummary};
        let ev = |claim: &str| Event {
            payload: Some(Payload::ArtifactIdentified(ArtifactIdentified {
                artifact: Some(ArtifactSummary {
                    sha256: "ab".repeat(32),
                    digest_state: DigestState::Verified as i32,
                    ..Default::default()
                }),
                claimed_sha256: claim.into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert!(compact_line(&ev(""), false).contains("sha256=abababababab…(computed)"));
        assert!(compact_line(&ev(&"ab".repeat(32)), false).contains("sha256=abababababab…(verified)"));
    }

    #[test]
    fn format_controls_and_raw_names_are_escaped() {
        assert_eq!(sanitize("evil\u{202e}fdp.gguf"), "evil\\u{202e}fdp.gguf");
        for c in ['\u{200e}', '\u{200f}', '\u{202a}', '\u{202d}', '\u{2066}', '\u{2069}', '\u{061c}', '\u{feff}'] {
            let s = sanitize(&format!("a{c}b"));
            assert!(!s.contains(c) && s.starts_with("a\\u{") && s.ends_with('b'), "{s:?}");
        }
        assert_eq!(sanitize("modèle-模型.gguf"), "modèle-模型.gguf", "other text is untouched");
        let f = FileRef {
            path: "/m/\u{fffd}.gguf".into(),
            path_bytes: b"/m/\xff\xe2\x80\xae\x1b.gguf".to_vec(),
            ..Default::default()
        };
        assert_eq!(sanitize(&display_path(&f)), "/m/\\xff\\u{202e}\\x1b.gguf");
        let ev = Event {
            payload: Some(Payload::ModelFileOpened(ModelFileOpened { file: Some(f), ..Default::default() })),
            ..Default::default()
        };
        assert!(compact_line(&ev, false).contains("/m/\\xff\\u{202e}\\x1b.gguf"));
    }
}
