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
    filter::Filter,
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
    let filter = Filter::from_request(&request).context("invalid filter")?;
    let color = super::use_color(&args.color);
    if let Some(from) = &args.from {
        return replay(from, &filter, args.format, color);
    }
    let rt = super::client_runtime()?;
    rt.block_on(async {
        let mut delay = Duration::from_millis(250);
        loop {
            match follow(&args.socket, &request, args.format, color).await {
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

async fn follow(socket: &Path, request: &TailRequest, format: OutputFormat, color: bool) -> anyhow::Result<Flow> {
    let mut client = api::connect(socket).await?;
    let mut stream = client.tail(request.clone()).await.context("Tail")?.into_inner();
    let stdout = std::io::stdout();
    loop {
        match stream.message().await {
            Ok(Some(ev)) => {
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

/// Prints the events of a capture that match `filter`. Lines that are not events are
/// reported on stderr and skipped; the exit code is 1 when there were any.
fn replay(path: &Path, filter: &Filter, format: OutputFormat, color: bool) -> anyhow::Result<ExitCode> {
    let input: Box<dyn std::io::Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?)
    };
    let mut reader = BufReader::new(input);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut bad = 0u64;
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
            eprintln!(
                "{}:{line_no}: line longer than {MAX_LINE} bytes, skipped",
                sanitize(&path.display().to_string())
            );
            bad += 1;
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(text) {
            Ok(ev) if filter.matches(&ev) => {
                if writeln!(out, "{}", render(&ev, format, color)).is_err() {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Ok(_) => {}
            Err(e) => {
                // serde quotes what it could not parse: text from the capture.
                eprintln!(
                    "{}:{line_no}: not an event: {}",
                    sanitize(&path.display().to_string()),
                    sanitize(&e.to_string())
                );
                bad += 1;
            }
        }
    }
    let _ = out.flush();
    Ok(if bad > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
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
