//! The binary: everything happens in `app`, which returns the exit code.

fn main() {
    std::process::exit(pulp_entrypoint::app::main(std::env::args_os().collect()));
}
