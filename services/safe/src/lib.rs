//! The safe service.
