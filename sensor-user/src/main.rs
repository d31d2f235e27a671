//! The `modelwatch` binary: parses the command line and hands over to `commands`.
use clap::Parser as _;

/// The collector allocates and frees small blocks for every event on one thread and frees many
/// of them on others (sinks, the API): glibc's malloc spent about a third of the collector's
/// time on that under load (BENCHMARKS.md), mimalloc a fraction of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    modelwatch::commands::dispatch(modelwatch::cli::Cli::parse())
}
