//! The async driver: owns all I/O and connects backend, core, store, timers and shutdown.
