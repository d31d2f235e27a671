//! The `modelwatch` binary: parses the command line and hands over to `commands`.
use clap::Parser as _;

fn main() -> std::process::ExitCode {
    modelwatch::commands::dispatch(modelwatch::cli::Cli::parse())
}
