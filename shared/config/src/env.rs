//! Where `${VAR}` references are looked up.

use std::collections::HashMap;

/// A source of environment variables for `${VAR}` interpolation.
///
/// Production code passes [`SystemEnv`]; tests pass a [`MapEnv`] so they never read or
/// change the process environment (which is shared by every test thread).
pub trait Env {
    /// The value of `name`, or `None` when it is not set. A variable whose value is not
    /// valid UTF-8 counts as not set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnv;

impl Env for SystemEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).and_then(|v| v.into_string().ok())
    }
}

/// A fixed set of variables, for tests and for callers that build the environment
/// themselves.
///
/// Its `Debug` prints only the variable names: values may be secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MapEnv(pub HashMap<String, String>);

impl MapEnv {
    /// An empty environment: every `${VAR}` without a default is an error.
    pub fn new() -> Self {
        Self::default()
    }

    /// This environment with `name` set to `value`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(name.into(), value.into());
        self
    }
}

impl std::fmt::Debug for MapEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_tuple("MapEnv").field(&names).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for MapEnv {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl From<HashMap<String, String>> for MapEnv {
    fn from(map: HashMap<String, String>) -> Self {
        Self(map)
    }
}

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn var(&self, name: &str) -> Option<String> {
        (**self).var(name)
    }
}
