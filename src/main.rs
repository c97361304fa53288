//! The binary: everything happens in `app`, which returns the exit code.

fn main() {
    // Before anything else, argv included: as PID 1 a signal with no handler
    // yet is dropped, a blocked one waits until the handlers are installed.
    pulp_entrypoint::pid1::block_early_signals();
    std::process::exit(pulp_entrypoint::app::main(std::env::args_os().collect()));
}
