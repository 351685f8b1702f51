//! Typed configuration: YAML with file:line:column errors, ${VAR} interpolation, secrets that never print, JSON Schema.
