//! The local Docker backend (work in progress).
