//! The sqlx store: migrations for PostgreSQL and SQLite, the event archive and exactly-once projections.
