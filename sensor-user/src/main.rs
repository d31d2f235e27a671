//! The `modelwatch` binary: parses the command line and hands over to `commands`.
use clap::Parser as _;

/// The collector allocates and frees small blocks for every event on one thread and frees many
/// of them on others (sinks, the API): glibc's malloc spent about a third of the collector's
/// time on that under load (BENCHMARKS.md), mimalloc a fraction of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of mimalloc.h (v3, the version libmimalloc-sys builds), which the
/// crate's bindings do not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Freed memory goes back to the system at once rather than a second later: the collector
    // frees in bursts and its resident size is what users see.
    // SAFETY: a plain option setter, called before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    modelwatch::commands::dispatch(modelwatch::cli::Cli::parse())
}
