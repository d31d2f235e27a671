//! The subcommands. Each returns the process exit code; errors become one line on stderr.

mod config_cmd;
mod run;
mod status;
mod tail;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Exit code for bad configuration or usage.
pub const EXIT_CONFIG: u8 = 2;

pub fn dispatch(cli: Cli) -> ExitCode {
    crate::logging::init(&cli.log, cli.log_format);
    let json_log = cli.log_format == crate::logging::LogFormat::Json;
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Tail(args) => tail::run(args),
        Command::Status(args) => status::run(args),
        Command::Scan(cmd) => scan(&cmd),
        Command::Config(args) => config_cmd::run(args),
        Command::Completions(args) => completions(args.shell),
        Command::Manpages(args) => manpages(&args.dir),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            // Errors quote paths and text from outside: they reach a terminal too. In the
            // log's format; as text, a configuration error keeps its second and third line
            // (the offending line and a caret under the spot).
            let message = crate::output::sanitize_lines(&format!("{e:#}"));
            if json_log {
                tracing::error!("{message}");
            } else {
                eprintln!("modelwatch: {message}");
            }
            if e.downcast_ref::<crate::config::ConfigError>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    };
    crate::logging::flush_suppressed();
    code
}

fn scan(cmd: &crate::cli::ScanCmd) -> anyhow::Result<ExitCode> {
    let cfg = load_config(cmd.config.as_deref())?;
    match print_scan(&cmd.args, &cfg.artifact) {
        Ok(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(EXIT_CONFIG))),
        Err(e) => {
            // scan's contract: 2 for every error, configuration or I/O.
            eprintln!("modelwatch scan: {}", crate::output::sanitize(&format!("{e:#}")));
            Ok(ExitCode::from(EXIT_CONFIG))
        }
    }
}

/// Runs the scan and prints it. Returns the scan's exit code (0 clean, 1 findings, 2 a path
/// could not be analysed); `Err` when the scan cannot start or its output cannot be written.
fn print_scan(args: &crate::cli::ScanArgs, cfg: &modelwatch_artifact::ArtifactConfig) -> anyhow::Result<i32> {
    use std::io::Write as _;

    use anyhow::Context as _;
    let out = modelwatch_artifact::scan::execute(&args.options(), cfg).context("artifact configuration")?;
    let mut w = std::io::stdout().lock();
    match args.format {
        crate::cli::ScanFormat::Json => {
            // One line per file, in the shape the sensor streams (`artifact_identified`), so
            // that a scan and the event stream feed the same parser.
            for a in &out.artifacts {
                let id = std::fs::metadata(&a.path).map_or(
                    modelwatch_artifact::FileIdentity {
                        dev: 0,
                        ino: 0,
                        size: a.size,
                        mtime_ns: 0,
                        ctime_sec: 0,
                        ctime_nsec: 0,
                    },
                    |m| modelwatch_artifact::FileIdentity::from_metadata(&m),
                );
                let payload = crate::enrich::artifact::identified(a, &id);
                serde_json::to_writer(&mut w, &payload).context("writing JSON")?;
                writeln!(w).context("writing to stdout")?;
            }
            w.flush().context("writing to stdout")?;
            let mut err = std::io::stderr().lock();
            modelwatch_artifact::scan::write_trailer(&mut err, &out).context("writing to stderr")?;
        }
        crate::cli::ScanFormat::Text => {
            modelwatch_artifact::scan::write_text(&mut w, &out).context("writing to stdout")?;
        }
    }
    w.flush().context("writing to stdout")?;
    Ok(out.summary.exit_code)
}

/// Prints the completion script of `shell` for the whole command line.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory as _;
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "modelwatch", &mut std::io::stdout().lock());
    Ok(ExitCode::SUCCESS)
}

/// Writes one man page per command (`modelwatch.1`, `modelwatch-run.1`, ...) into `dir`.
fn manpages(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use clap::CommandFactory as _;
    fn write(cmd: clap::Command, dir: &std::path::Path) -> anyhow::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            write(sub, dir)?;
        }
        let man = clap_mangen::Man::new(cmd)
            .source(format!("modelwatch {}", env!("CARGO_PKG_VERSION")))
            .manual("modelwatch manual");
        man.generate_to(dir).with_context(|| format!("writing a man page into {}", dir.display()))?;
        Ok(())
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    write(cmd, dir)?;
    Ok(ExitCode::SUCCESS)
}

/// Whether to colour output: `auto` colours terminals unless NO_COLOR is set.
pub fn use_color(choice: &str) -> bool {
    use std::io::IsTerminal as _;
    match choice {
        "always" => true,
        "never" => false,
        _ => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// A small runtime for the client commands.
pub fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}

/// Loads the sensor configuration: the named file, or the default path (built-in defaults
/// when it does not exist).
pub fn load_config(path: Option<&std::path::Path>) -> Result<crate::config::Config, crate::config::ConfigError> {
    match path {
        Some(p) => crate::config::Config::load(p, true),
        None => crate::config::Config::load(std::path::Path::new(crate::config::DEFAULT_PATH), false),
    }
}
