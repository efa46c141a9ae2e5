//! The `nightjar` binary: parse arguments, run the subcommand, exit with its code.

use clap::Parser;

/// Many short tasks allocate and free sessions, plans and JSON at a high rate; glibc's
/// allocator showed up as ~15% of CPU there (perf), mimalloc is what DataFusion's CLI uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    nightjar::app::run(nightjar::cli::Cli::parse())
}
