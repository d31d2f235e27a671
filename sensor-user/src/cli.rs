//! Command-line interface definitions (clap). Parsing only; `commands` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::OutputFormat;

#[derive(Debug, Parser)]
#[command(name = "modelwatch", version, about = "See local AI inference: model files, accelerators and inference sessions, from the kernel")]
pub struct Cli {
    /// Log filter for diagnostics on stderr (tracing env-filter syntax).
    #[arg(long, global = true, env = "MODELWATCH_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sensor (root): load the probes and stream events to the configured sinks.
    Run(RunArgs),
    /// Configuration helpers.
    Config(ConfigArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file; built-in defaults apply when the default file does not exist.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Output format on stdout (overrides the config's output.format).
    #[arg(long, short, value_enum)]
    pub format: Option<OutputFormat>,
    /// Colour the compact output: auto (when stdout is a terminal), always or never.
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Print the built-in default configuration.
    #[arg(long, conflicts_with = "check")]
    pub default: bool,
    /// Validate a configuration file.
    #[arg(long)]
    pub check: Option<PathBuf>,
}
