//! Command-line argument types (clap).
