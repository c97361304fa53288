//! Throwaway PostgreSQL clusters for tests.
