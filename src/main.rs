//! The `livebucket` binary; the command line is in `cli/`.

// `pub` marks what the binary or the tests use; everything else is
// `pub(crate)`, so the compiler reports dead code.
#![warn(unreachable_pub)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
