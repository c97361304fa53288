//! Running the built `pulp-entrypoint` binary from tests.
