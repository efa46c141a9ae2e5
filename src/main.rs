//! The `nightjar` binary: parse arguments, run the subcommand, exit with its code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    nightjar::app::run(nightjar::cli::Cli::parse())
}
