//! Command-line interface definitions (clap). Parsing only; `commands` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, builder::PossibleValuesParser};

use crate::config::OutputFormat;

/// Files and environment, for `--help` and the man page (paragraphs: roff reflows lines).
const AFTER_HELP: &str = "\
Files: /etc/modelwatch/modelwatch.toml is the configuration (`modelwatch config --default` \
prints every setting with its default). /var/lib/modelwatch keeps state across restarts (the \
digest cache). /run/modelwatch/modelwatch.sock is the local API of `tail` and `status`, open to \
root and the modelwatch group. /var/log/modelwatch receives event files when [output.jsonl] is set.

Environment: MODELWATCH_LOG is the log filter (as --log), MODELWATCH_LOG_FORMAT its format (as \
--log-format), MODELWATCH_SOCKET the API socket of `tail` and `status`. systemd sets \
NOTIFY_SOCKET and WATCHDOG_USEC: the sensor then reports readiness, status and liveness.";

/// What `modelwatch run` needs, for its help and man page.
const RUN_HELP: &str = "\
Run the sensor: load the kernel probes and stream events to the configured sinks and the local API.

It needs root, or exactly these capabilities (the packaged systemd unit runs it as the user \
modelwatch with them): CAP_BPF and CAP_PERFMON to load and attach the probes, \
CAP_DAC_READ_SEARCH to read tracefs and the model files of every user, CAP_SYS_PTRACE to read \
other users' processes in /proc, CAP_CHECKPOINT_RESTORE to read models held only as mappings. \
It checks them at start and names any that is missing.";

#[derive(Debug, Parser)]
#[command(
    name = "modelwatch",
    version,
    about = "See local AI inference: model files, accelerators and inference sessions, from the kernel",
    after_long_help = AFTER_HELP
)]
pub struct Cli {
    /// Log filter for diagnostics on stderr (tracing env-filter syntax).
    #[arg(long, global = true, env = "MODELWATCH_LOG", default_value = "info")]
    pub log: String,
    /// Format of those diagnostics: readable text, or one JSON object per line.
    #[arg(long, global = true, value_enum, env = "MODELWATCH_LOG_FORMAT", default_value = "text")]
    pub log_format: crate::logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sensor (root, or the capabilities in its long help): load the probes and stream
    /// events to the configured sinks.
    #[command(long_about = RUN_HELP)]
    Run(RunArgs),
    /// Follow the sensor's live event stream (or replay a JSON-lines capture with --from).
    Tail(TailArgs),
    /// Show the sensor's state and counters.
    Status(StatusArgs),
    /// Identify model files by content and judge them (format, digest, pickle safety,
    /// approval, licence). Exit code: 0 clean, 1 findings, 2 error.
    Scan(ScanCmd),
    /// Configuration helpers.
    Config(ConfigArgs),
    /// Print a shell completion script to stdout.
    Completions(CompletionsArgs),
    /// Write the man pages (one per command) into DIR.
    #[command(hide = true)]
    Manpages(ManpagesArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManpagesArgs {
    /// Directory to write `modelwatch.1`, `modelwatch-run.1`, ... into.
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// The sensor's API socket.
    #[arg(long, default_value = crate::config::DEFAULT_SOCKET, env = "MODELWATCH_SOCKET")]
    pub socket: PathBuf,
    /// Output format (`text` is `compact`). No short option: `-f` would read as "follow",
    /// which `tail` always does.
    #[arg(long, value_enum, default_value = "compact")]
    pub format: OutputFormat,
    /// Only these event kinds (the schema's payload names); repeatable.
    #[arg(long = "kind", value_name = "KIND", value_parser = PossibleValuesParser::new(crate::proto::PAYLOAD_NAMES))]
    pub kinds: Vec<String>,
    /// Only events of these process ids; repeatable.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Only events of processes with this name (comm or executable file name); repeatable.
    #[arg(long = "process", value_name = "NAME")]
    pub processes: Vec<String>,
    /// Only events about this model: a SHA-256 prefix, or part of its name or path; repeatable.
    #[arg(long = "model", value_name = "MODEL")]
    pub models: Vec<String>,
    /// Lowest severity shown.
    #[arg(long, value_enum, default_value = "info")]
    pub min_severity: SeverityArg,
    /// Only events at or after this time (their event_time): an RFC 3339 time
    /// (2026-12-04T13:40:00Z) or a duration back from now (90s, 10m, 2h, 1d). On the live
    /// stream this drops only what the sensor sends; it replays nothing older.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only events of processes of this user: a name or a numeric uid; repeatable.
    #[arg(long = "user", value_name = "USER")]
    pub users: Vec<String>,
    /// Only events of this inference session (an id or its prefix, as the compact lines show
    /// it): its session events and the other events of its process from its start to its end;
    /// repeatable.
    #[arg(long = "session", value_name = "ID")]
    pub sessions: Vec<String>,
    /// Only events of processes in this container: a cgroup id (the process block's
    /// cgroup_id, exact) or part of a container id (docker, containerd, cri-o, podman);
    /// repeatable.
    #[arg(long = "container", value_name = "ID")]
    pub containers: Vec<String>,
    /// Keep following across sensor restarts.
    #[arg(long)]
    pub reconnect: bool,
    /// Read recorded JSON lines from FILE ("-" for stdin) instead of the live socket. Lines
    /// that are not events are named on stderr (line number and why), counted at the end, and
    /// make the exit code 1; 0 when every line was an event. (Exit code 2: a usage error, such
    /// as an unknown kind or a bad --since.)
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Colour: auto (when stdout is a terminal), always or never.
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeverityArg {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The sensor's API socket.
    #[arg(long, default_value = crate::config::DEFAULT_SOCKET, env = "MODELWATCH_SOCKET")]
    pub socket: PathBuf,
    /// `text` or `json`.
    #[arg(long, short, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file; built-in defaults apply when the default file does not exist.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Output format on stdout (overrides the config's output.format; `text` is `compact`).
    #[arg(long, short, value_enum)]
    pub format: Option<OutputFormat>,
    /// Colour the compact output: auto (when stdout is a terminal), always or never.
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
}

#[derive(Debug, Args)]
pub struct ScanCmd {
    /// Configuration file whose [artifact] table applies (licences, manifest, limits).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub args: ScanArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScanFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// Files or directories to analyse (directories are walked).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format: `text`, or `json`: one JSON object per file on stdout (JSON lines), each
    /// the `artifact_identified` event's payload (proto3 JSON mapping); sharded models, errors
    /// and the summary line go to stderr.
    #[arg(long, value_enum, default_value_t = ScanFormat::Text)]
    pub format: ScanFormat,
    /// Approved-model manifest (TOML or JSON); overrides `artifact.manifest`.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Do not compute SHA-256 digests (policy verdicts become `unknown`).
    #[arg(long)]
    pub no_digest: bool,
    /// The lowest finding severity that makes the exit code 1.
    #[arg(long, value_enum, default_value_t = SeverityArg::Low, value_name = "SEVERITY")]
    pub fail_on: SeverityArg,
    /// In walked directories, also report files that are not models.
    #[arg(long)]
    pub all: bool,
    /// How many directory levels are walked below each PATH.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_depth: usize,
    /// Report models that declare no licence (a `license_missing` finding, low). Off by
    /// default: pickles and most GGUF files carry none.
    #[arg(long)]
    pub require_license: bool,
}

impl ScanArgs {
    /// The scan these arguments ask for.
    pub fn options(&self) -> modelwatch_artifact::scan::ScanOptions {
        use modelwatch_artifact::Severity as S;
        modelwatch_artifact::scan::ScanOptions {
            paths: self.paths.clone(),
            manifest: self.manifest.clone(),
            digest: !self.no_digest,
            fail_on: match self.fail_on {
                SeverityArg::Info => S::Info,
                SeverityArg::Low => S::Low,
                SeverityArg::Medium => S::Medium,
                SeverityArg::High => S::High,
                SeverityArg::Critical => S::Critical,
            },
            all: self.all,
            max_depth: self.max_depth,
            require_license: self.require_license,
        }
    }
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Print the built-in default configuration.
    #[arg(long, conflicts_with_all = ["check", "effective"])]
    pub default: bool,
    /// Validate a configuration file.
    #[arg(long, conflicts_with = "effective")]
    pub check: Option<PathBuf>,
    /// Print the running sensor's configuration in force (asked over its API socket), as TOML:
    /// the file as of the start or the last reload (SIGHUP); settings a reload could not apply
    /// keep their running value and are listed in a comment.
    #[arg(long)]
    pub effective: bool,
    /// The sensor's API socket (for --effective).
    #[arg(long, default_value = crate::config::DEFAULT_SOCKET, env = "MODELWATCH_SOCKET")]
    pub socket: PathBuf,
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn scan_arguments_parse() {
        let c = Cli::try_parse_from([
            "modelwatch",
            "scan",
            "--format",
            "json",
            "--no-digest",
            "--fail-on",
            "high",
            "--all",
            "--max-depth",
            "3",
            "a",
            "b",
        ])
        .expect("parse");
        let Command::Scan(scan) = c.command else { panic!("not scan") };
        assert_eq!(scan.args.format, ScanFormat::Json);
        let o = scan.args.options();
        assert!(!o.digest && o.all);
        assert_eq!((o.fail_on, o.max_depth, o.paths.len()), (modelwatch_artifact::Severity::High, 3, 2));
        assert!(Cli::try_parse_from(["modelwatch", "scan"]).is_err(), "a path is required");
    }

    #[test]
    fn ocsf_is_a_format_of_run_and_tail() {
        let c = Cli::try_parse_from(["modelwatch", "run", "--format", "ocsf"]).expect("parse");
        let Command::Run(run) = c.command else { panic!("not run") };
        assert_eq!(run.format, Some(OutputFormat::Ocsf));
        let c = Cli::try_parse_from(["modelwatch", "tail", "--format", "ocsf"]).expect("parse");
        let Command::Tail(tail) = c.command else { panic!("not tail") };
        assert_eq!(tail.format, OutputFormat::Ocsf);
    }

    /// `-f` reads as "follow" to anyone who knows tail(1): it is not a format option of `tail`,
    /// and `--format text|json` works on every command that prints events or state.
    #[test]
    fn tail_has_no_dash_f_and_every_command_takes_text_and_json() {
        assert!(Cli::try_parse_from(["modelwatch", "tail", "-f", "json"]).is_err());
        for (cmd, f) in [("tail", "text"), ("tail", "json"), ("run", "text"), ("run", "json")] {
            let c = Cli::try_parse_from(["modelwatch", cmd, "--format", f]).expect(cmd);
            let format = match c.command {
                Command::Tail(t) => t.format,
                Command::Run(r) => r.format.expect("format"),
                _ => unreachable!(),
            };
            let expected = if f == "text" { OutputFormat::Compact } else { OutputFormat::Json };
            assert_eq!(format, expected, "{cmd} --format {f}");
        }
        for f in ["text", "json"] {
            assert!(Cli::try_parse_from(["modelwatch", "status", "--format", f]).is_ok());
            assert!(Cli::try_parse_from(["modelwatch", "scan", "--format", f, "x"]).is_ok());
        }
    }

    /// The valid kinds are the schema's table, shown in the help and named when one is wrong.
    #[test]
    fn tail_kinds_come_from_the_schema() {
        let c = Cli::try_parse_from(["modelwatch", "tail", "--kind", "model_read", "--kind", "session_started"])
            .expect("parse");
        let Command::Tail(tail) = c.command else { panic!("not tail") };
        assert_eq!(tail.kinds, ["model_read", "session_started"]);
        let e = Cli::try_parse_from(["modelwatch", "tail", "--kind", "model_open"]).expect_err("unknown kind");
        let msg = e.to_string();
        for k in crate::proto::PAYLOAD_NAMES {
            assert!(msg.contains(k), "{k} missing from: {msg}");
        }
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let help = cmd.find_subcommand_mut("tail").expect("tail").render_long_help().to_string();
        for k in crate::proto::PAYLOAD_NAMES {
            assert!(help.contains(k), "{k} missing from tail --help");
        }
    }
}
