use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Readiness of every service in the process.
#[derive(Clone, Default)]
pub struct Readiness {
    inner: Arc<Mutex<BTreeMap<&'static str, Arc<AtomicBool>>>>,
    draining: Arc<AtomicBool>,
}

/// One service's switch.
#[derive(Clone)]
pub struct ReadyHandle(Arc<AtomicBool>);

impl ReadyHandle {
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn set_not_ready(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Readiness {
    pub fn register(&self, service: &'static str) -> ReadyHandle {
        let flag = Arc::new(AtomicBool::new(false));
        if let Ok(mut m) = self.inner.lock() {
            m.insert(service, flag.clone());
        }
        ReadyHandle(flag)
    }

    /// Mark the process as shutting down: it stops being ready at once.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Each service and whether it is ready.
    pub fn services(&self) -> Vec<(&'static str, bool)> {
        self.inner
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (*k, v.load(Ordering::SeqCst)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ready when not draining, at least one service is registered and all are ready.
    pub fn is_ready(&self) -> bool {
        let s = self.services();
        !self.is_draining() && !s.is_empty() && s.iter().all(|(_, r)| *r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_all_are() {
        let r = Readiness::default();
        assert!(!r.is_ready(), "nothing registered is not ready");
        let a = r.register("a");
        let b = r.register("b");
        a.set_ready();
        assert!(!r.is_ready());
        b.set_ready();
        assert!(r.is_ready());
        b.set_not_ready();
        assert!(!r.is_ready());
        b.set_ready();
        r.set_draining();
        assert!(!r.is_ready(), "a draining process is not ready");
    }
}
