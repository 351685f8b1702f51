//! The service shape, supervisor, shutdown, health, readiness and metrics endpoints shared by every Steward process.
