//! The sensor's diagnostics on stderr, which under systemd is the journal: their format,
//! colour and priorities, and the limit on repeats.
//!
//! - Colour only when stderr is a terminal (and `NO_COLOR` is unset): escape codes in the
//!   journal are garbage.
//! - `text` (the default) or `json` (one object per line, fields flattened beside `message`).
//! - When stderr is the journal (`JOURNAL_STREAM` names it), text lines carry their syslog
//!   priority (`<4>`) so `journalctl -p warning` works, and no timestamp (journald adds one).
//! - Warnings and errors are rate-limited per call site: a problem that repeats (a sink that
//!   cannot write, files that fail analysis one after another) is logged [`BURST`] times per
//!   [`WINDOW`]; the next line of that call site after the pause says how many were left out
//!   (`suppressed=N`, or `"suppressed":N` in JSON), and [`flush_suppressed`] reports the rest at
//!   exit. Nothing is dropped without being counted.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use tracing::{Event, Level, Metadata, Subscriber, callsite::Identifier};
use tracing_subscriber::{
    Layer as _,
    filter::FilterExt as _,
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{self, Writer},
    },
    layer::{Context, Filter, SubscriberExt as _},
    registry::LookupSpan,
    util::SubscriberInitExt as _,
};

/// Lines one call site may log per [`WINDOW`] before its repeats are only counted.
pub const BURST: u32 = 10;
/// The rate limit's window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The format of the log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

static LIMITER: OnceLock<RateLimit> = OnceLock::new();

/// Installs the global logger. A `filter` that is not valid is said in the log, and `info`
/// applies.
pub fn init(filter: &str, format: LogFormat) {
    use std::io::IsTerminal as _;
    let (env_filter, bad) = match tracing_subscriber::EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (tracing_subscriber::EnvFilter::new("info"), Some(e)),
    };
    let journal = stderr_is_journal();
    let ansi = !journal && std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let limiter = LIMITER.get_or_init(|| RateLimit::new(BURST, WINDOW, Instant::now)).clone();
    let layer = fmt_layer(format, journal, ansi, std::io::stderr);
    let _ = tracing_subscriber::registry().with(layer.with_filter(env_filter.and(limiter))).try_init();
    if let Some(e) = bad {
        tracing::warn!("log filter `{filter}` is not valid ({e}); logging at info");
    }
}

type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

fn fmt_layer<W>(format: LogFormat, journal: bool, ansi: bool, writer: W) -> BoxedLayer
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi);
    match format {
        LogFormat::Json => {
            let inner = format::format().json().flatten_event(true).with_current_span(false).with_target(false);
            layer
                .fmt_fields(format::JsonFields::new())
                .event_format(Lines { inner, journal: false, json: true })
                .boxed()
        }
        LogFormat::Text if journal => {
            let inner = format::format().with_target(false).without_time().with_ansi(false);
            layer.event_format(Lines { inner, journal: true, json: false }).boxed()
        }
        LogFormat::Text => {
            let inner = format::format().with_target(false).with_ansi(ansi);
            layer.event_format(Lines { inner, journal: false, json: false }).boxed()
        }
    }
}

/// Whether stderr is the journal's stream: systemd sets `JOURNAL_STREAM=<dev>:<inode>` of it.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsRawFd as _;
    let Some(want) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a stat into `st`, which is large enough; fd 2 may be closed (then
    // it fails and `st` is not read).
    if unsafe { libc::fstat(std::io::stderr().as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    want.to_str() == Some(&format!("{}:{}", st.st_dev, st.st_ino))
}

/// The syslog priority of a level (what journald reads from a `<N>` prefix).
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

std::thread_local! {
    /// Repeats the rate limit left out before the event it just let through: set by the
    /// filter, read by the formatter right after, on the same thread.
    static SUPPRESSED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The line format: the inner format, with the journal's priority prefix and the count of
/// suppressed repeats added.
struct Lines<F> {
    inner: F,
    journal: bool,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for Lines<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        if self.journal {
            write!(writer, "<{}>", priority(event.metadata().level()))?;
        }
        let suppressed = SUPPRESSED.replace(0);
        if suppressed == 0 {
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        match line.strip_suffix('}') {
            Some(object) if self.json => writeln!(writer, "{object},\"suppressed\":{suppressed}}}"),
            _ => writeln!(writer, "{line} suppressed={suppressed}"),
        }
    }
}

/// Per call site: lines in the current window, and repeats left out since the last line.
#[derive(Debug)]
struct Window {
    start: Instant,
    passed: u32,
    suppressed: u64,
    file: &'static str,
    line: u32,
    message: &'static str,
}

/// The rate limit on warnings and errors, per call site (a per-layer filter).
#[derive(Clone)]
pub struct RateLimit {
    burst: u32,
    window: Duration,
    clock: fn() -> Instant,
    sites: Arc<Mutex<HashMap<Identifier, Window>>>,
}

impl RateLimit {
    pub fn new(burst: u32, window: Duration, clock: fn() -> Instant) -> Self {
        Self { burst, window, clock, sites: Arc::default() }
    }

    /// Whether an event of `meta` is logged; when it is, the repeats left out before it are
    /// returned with it.
    fn admit(&self, meta: &'static Metadata<'static>) -> Option<u64> {
        if *meta.level() > Level::WARN {
            return Some(0);
        }
        let now = (self.clock)();
        let mut sites = self.sites.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let w = sites.entry(meta.callsite()).or_insert_with(|| Window {
            start: now,
            passed: 0,
            suppressed: 0,
            file: meta.file().unwrap_or("?"),
            line: meta.line().unwrap_or(0),
            message: meta.name(),
        });
        if now.duration_since(w.start) >= self.window {
            w.start = now;
            w.passed = 0;
        }
        if w.passed < self.burst {
            w.passed += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }

    /// Call sites with repeats left out since their last line, and how many.
    fn pending(&self) -> Vec<(String, u64)> {
        let mut sites = self.sites.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<(String, u64)> = sites
            .values_mut()
            .filter(|w| w.suppressed > 0)
            .map(|w| (format!("{} ({}:{})", w.message, w.file, w.line), std::mem::take(&mut w.suppressed)))
            .collect();
        out.sort();
        out
    }
}

impl<S> Filter<S> for RateLimit {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        match self.admit(event.metadata()) {
            Some(n) => {
                SUPPRESSED.set(n);
                true
            }
            None => false,
        }
    }
}

/// Logs, once, the repeats the rate limit left out since each call site's last line (at
/// exit: nothing is left out without a count).
pub fn flush_suppressed() {
    let Some(limiter) = LIMITER.get() else { return };
    for (site, n) in limiter.pending() {
        tracing::warn!(suppressed = n, "{n} more lines from {site} were left out by the log rate limit");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// The test clock: a fixed start plus an offset the test moves.
    static OFFSET_MS: AtomicU64 = AtomicU64::new(0);
    static START: OnceLock<Instant> = OnceLock::new();

    fn clock() -> Instant {
        *START.get_or_init(Instant::now) + Duration::from_millis(OFFSET_MS.load(Ordering::SeqCst))
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat, journal: bool, f: impl FnOnce(&RateLimit)) -> String {
        let buf = Buffer::default();
        let out = buf.clone();
        let limiter = RateLimit::new(3, Duration::from_secs(60), clock);
        let layer = fmt_layer(format, journal, false, move || out.clone());
        let subscriber = tracing_subscriber::registry()
            .with(layer.with_filter(tracing_subscriber::EnvFilter::new("info").and(limiter.clone())));
        tracing::subscriber::with_default(subscriber, || f(&limiter));
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    fn fail(i: u32) {
        tracing::warn!(file = %format!("/m/{i}.gguf"), "analysis failed");
    }

    /// The one test that moves the shared clock (tests run in parallel).
    #[test]
    fn repeats_are_limited_per_call_site_and_counted() {
        let text = capture(LogFormat::Text, false, |limiter| {
            for i in 0..10 {
                fail(i);
            }
            tracing::warn!("another problem");
            tracing::info!("info is never limited");
            tracing::info!("info is never limited");
            tracing::info!("info is never limited");
            tracing::info!("info is never limited");
            OFFSET_MS.fetch_add(61_000, Ordering::SeqCst);
            fail(10);
            fail(11);
            assert!(limiter.pending().is_empty(), "the count went out with the line");
            for i in 12..20 {
                fail(i);
            }
            let pending = limiter.pending();
            assert_eq!(pending.len(), 1, "{pending:?}");
            assert_eq!(pending[0].1, 7, "{pending:?}");
            assert!(pending[0].0.contains("logging.rs"), "{pending:?}");
        });
        let lines: Vec<&str> = text.lines().collect();
        let failed: Vec<&&str> = lines.iter().filter(|l| l.contains("analysis failed")).collect();
        assert_eq!(failed.len(), 3 + 3, "{text}");
        assert!(failed[0].contains("file=/m/0.gguf") && !failed[0].contains("suppressed"), "{text}");
        assert!(failed[3].contains("file=/m/10.gguf") && failed[3].ends_with(" suppressed=7"), "{text}");
        assert!(!failed[4].contains("suppressed"), "{text}");
        assert_eq!(lines.iter().filter(|l| l.contains("another problem")).count(), 1);
        assert_eq!(lines.iter().filter(|l| l.contains("info is never limited")).count(), 4);
        assert!(!text.contains('\x1b'), "{text}");
    }

    #[test]
    fn json_lines_are_objects_with_the_fields_beside_the_message() {
        let text = capture(LogFormat::Json, false, |_| {
            tracing::warn!(sink = "jsonl", error = "disk full", "sink write failed");
        });
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["message"], "sink write failed");
        assert_eq!((v["sink"].as_str(), v["error"].as_str()), (Some("jsonl"), Some("disk full")));
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn json_suppressed_count_is_a_field() {
        let buf = Buffer::default();
        let out = buf.clone();
        let layer = fmt_layer(LogFormat::Json, false, false, move || out.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            SUPPRESSED.set(42);
            tracing::warn!("sink write failed");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["suppressed"], 42, "{text}");
    }

    #[test]
    fn journal_lines_carry_the_priority_and_no_timestamp() {
        let text = capture(LogFormat::Text, true, |_| {
            tracing::error!("cannot write");
            tracing::info!(socket = "/run/modelwatch/modelwatch.sock", "API listening");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("<3>ERROR cannot write"), "{text}");
        assert!(lines[1].starts_with("<6> INFO API listening socket=\"/run/modelwatch/modelwatch.sock\""), "{text}");
    }
}
