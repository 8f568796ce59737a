//! The HTTP API of the daemon (axum): task submission, queries, the change feed, kills, logs,
//! `/metrics` and `/healthz`.
