//! The rebalancer service.
