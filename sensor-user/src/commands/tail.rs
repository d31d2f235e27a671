//! `modelwatch tail`: follow the live stream through the API, or replay a JSON-lines capture.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::Path,
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    api,
    cli::{SeverityArg, TailArgs},
    config::OutputFormat,
    filter::{Filter, LocalFilter},
    output::{render, sanitize},
    proto::v1::{Event, Severity, TailRequest},
};

/// Longest line accepted from a capture file; longer lines are reported and skipped.
const MAX_LINE: u64 = 16 << 20;

pub fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let request = TailRequest {
        kinds: args.kinds.clone(),
        pids: args.pids.clone(),
        process_names: args.processes.clone(),
        models: args.models.clone(),
        min_severity: severity(args.min_severity) as i32,
    };
    // Validate here too: a bad filter is a usage error, reported before connecting.
    let filter = match Filter::from_request(&request) {
        Ok(f) => f,
        Err(e) => return Ok(usage_error(&e)),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let local = LocalFilter::new(
        args.since.as_deref(),
        &args.users,
        &args.sessions,
        &args.containers,
        i64::try_from(now).unwrap_or(i64::MAX),
    );
    let mut local = match local {
        Ok(f) => f,
        Err(e) => return Ok(usage_error(&e)),
    };
    let color = super::use_color(&args.color);
    if let Some(from) = &args.from {
        return replay(from, &filter, &mut local, args.format, color);
    }
    // `--session` learns the session's process from its session events: the server sends
    // every kind then, and the kind filter applies here.
    let request = if local.needs_session_events() { TailRequest { kinds: Vec::new(), ..request } } else { request };
    let rt = super::client_runtime()?;
    rt.block_on(async {
        let mut delay = Duration::from_millis(250);
        loop {
            match follow(&args.socket, &request, (&filter, &mut local), args.format, color).await {
                Ok(Flow::Closed) => return Ok(ExitCode::SUCCESS),
                Ok(Flow::Ended) if !args.reconnect => return Ok(ExitCode::SUCCESS),
                Ok(Flow::Ended) => eprintln!("modelwatch tail: the sensor closed the stream; reconnecting"),
                Err(e) if !args.reconnect => return Err(e),
                Err(e) => eprintln!("modelwatch tail: {}; retrying in {delay:?}", sanitize(&format!("{e:#}"))),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    })
}

/// A bad filter value is a usage error, like an unknown option: exit code 2.
fn usage_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("modelwatch tail: invalid filter: {}", sanitize(&e.to_string()));
    ExitCode::from(super::EXIT_CONFIG)
}

fn severity(s: SeverityArg) -> Severity {
    match s {
        SeverityArg::Info => Severity::Info,
        SeverityArg::Low => Severity::Low,
        SeverityArg::Medium => Severity::Medium,
        SeverityArg::High => Severity::High,
        SeverityArg::Critical => Severity::Critical,
    }
}

enum Flow {
    /// The sensor ended the stream (it stopped).
    Ended,
    /// Our stdout went away (e.g. `| head`).
    Closed,
}

async fn follow(
    socket: &Path,
    request: &TailRequest,
    (filter, local): (&Filter, &mut LocalFilter),
    format: OutputFormat,
    color: bool,
) -> anyhow::Result<Flow> {
    let mut client = api::connect(socket).await?;
    let mut stream = client.tail(request.clone()).await.context("Tail")?.into_inner();
    let stdout = std::io::stdout();
    loop {
        match stream.message().await {
            Ok(Some(ev)) => {
                if !(local.matches(&ev) && filter.matches(&ev)) {
                    continue;
                }
                let mut out = stdout.lock();
                if writeln!(out, "{}", render(&ev, format, color)).and_then(|()| out.flush()).is_err() {
                    return Ok(Flow::Closed);
                }
            }
            Ok(None) => return Ok(Flow::Ended),
            Err(status) => anyhow::bail!("stream from {} failed: {}", socket.display(), sanitize(status.message())),
        }
    }
}

/// Prints the events of a capture that match the filters. Lines that are not events are
/// named on stderr, skipped and counted in a last line; the exit code is 1 when there were any.
fn replay(
    path: &Path,
    filter: &Filter,
    local: &mut LocalFilter,
    format: OutputFormat,
    color: bool,
) -> anyhow::Result<ExitCode> {
    let input: Box<dyn std::io::Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?)
    };
    let mut reader = BufReader::new(input);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let name = sanitize(&path.display().to_string());
    let mut bad = 0u64;
    let mut events = 0u64;
    let mut unknown = 0u64;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.len() as u64 > MAX_LINE {
            skip_line(&mut reader).with_context(|| format!("reading {}", path.display()))?;
            eprintln!("modelwatch tail: {name} line {line_no}: not a modelwatch event: longer than {MAX_LINE} bytes");
            bad += 1;
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match parse_event(text) {
            Ok(ev) => {
                events += 1;
                if local.matches(&ev) && filter.matches(&ev) && writeln!(out, "{}", render(&ev, format, color)).is_err()
                {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Err(why) => {
                // Flush first: the report lands between the events it sits between.
                let _ = out.flush();
                match why {
                    // serde quotes what it could not parse: text from the capture.
                    NotShown::Invalid(why) => {
                        eprintln!("modelwatch tail: {name} line {line_no}: not a modelwatch event: {}", sanitize(&why));
                        bad += 1;
                    }
                    NotShown::UnknownKind => {
                        eprintln!(
                            "modelwatch tail: {name} line {line_no}: an event of a kind this build does not know \
                             (a newer sensor's?), skipped"
                        );
                        unknown += 1;
                    }
                }
            }
        }
    }
    let _ = out.flush();
    if unknown > 0 {
        eprintln!("modelwatch tail: {name}: {unknown} event(s) of kinds this build does not know (skipped)");
    }
    if bad > 0 {
        eprintln!(
            "modelwatch tail: {name}: {bad} of {} non-empty lines were not modelwatch events (skipped)",
            events + unknown + bad
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What a line of a capture is, when it is not an event to show.
#[derive(Debug, PartialEq)]
enum NotShown {
    /// Not a modelwatch event at all (why).
    Invalid(String),
    /// An event (it has the envelope's fields) of a kind this build does not know: a newer
    /// sensor's. Not an error, but not dropped silently either.
    UnknownKind,
}

/// Envelope fields: an object with one of them and no known payload is an event of a newer kind.
const ENVELOPE_FIELDS: [&str; 5] = ["schema_version", "event_id", "seq", "event_time", "run_id"];

/// One line of a capture as an event. The JSON mapping ignores unknown fields (a newer
/// sensor's additions), so any object parses: one without a known kind is not shown.
fn parse_event(text: &str) -> Result<Event, NotShown> {
    let ev = serde_json::from_str::<Event>(text).map_err(|e| NotShown::Invalid(e.to_string()))?;
    if ev.payload.is_some() {
        return Ok(ev);
    }
    let envelope = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.as_object().map(|o| ENVELOPE_FIELDS.iter().any(|f| o.contains_key(*f))))
        .unwrap_or(false);
    if envelope {
        Err(NotShown::UnknownKind)
    } else {
        Err(NotShown::Invalid(format!(
            "no event kind (a JSON object with one of: {})",
            crate::proto::PAYLOAD_NAMES.join(", ")
        )))
    }
}

/// Drops the rest of the current line without holding it (it may have no end).
fn skip_line(reader: &mut impl std::io::BufRead) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader};

    #[test]
    fn objects_without_a_kind_are_not_events() {
        use super::{NotShown, parse_event};
        assert!(parse_event(r#"{"process_exit":{"exit_code":3}}"#).is_ok());
        for bad in [r#"{"hello":"world"}"#, "{}", "[1]", "42", "not json", r#"{"seq":[1]}"#] {
            assert!(matches!(parse_event(bad), Err(NotShown::Invalid(_))), "{bad}");
        }
        let newer = r#"{"seq":"4","payload_from_the_future":{}}"#;
        assert_eq!(parse_event(newer).map(|_| ()), Err(NotShown::UnknownKind));
    }

    #[test]
    fn skipping_a_line_holds_nothing_and_stops_at_its_end() {
        let text = format!("{}\nnext\n", "x".repeat(100_000));
        let mut r = BufReader::with_capacity(64, text.as_bytes());
        super::skip_line(&mut r).unwrap();
        let mut rest = String::new();
        r.read_line(&mut rest).unwrap();
        assert_eq!(rest, "next\n");
        super::skip_line(&mut r).unwrap(); // at the end: nothing left, no error
    }
}
