//! The runner service.
