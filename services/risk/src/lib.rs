//! The risk service.
