//! The api service.
