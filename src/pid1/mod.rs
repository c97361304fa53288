//! PID 1 duties: spawn the child, forward signals, reap zombies, pass on exit codes.

