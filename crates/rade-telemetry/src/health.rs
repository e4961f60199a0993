use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What makes a worker ready: partitions to work on, a reachable broker, a writable lake.
#[derive(Debug)]
pub struct Health {
    assigned: AtomicUsize,
    broker_up: AtomicBool,
    lake_writable: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        // Optimistic until told otherwise: startup has checked both before serving.
        Health {
            assigned: AtomicUsize::new(0),
            broker_up: AtomicBool::new(true),
            lake_writable: AtomicBool::new(true),
        }
    }
}

impl Health {
    pub(crate) fn set_assigned(&self, n: usize) {
        self.assigned.store(n, Ordering::Relaxed);
    }

    /// Whether at least one broker connection is up (librdkafka statistics).
    pub fn set_broker_up(&self, up: bool) {
        self.broker_up.store(up, Ordering::Relaxed);
    }

    /// Whether the last lake write succeeded.
    pub fn set_lake_writable(&self, ok: bool) {
        self.lake_writable.store(ok, Ordering::Relaxed);
    }

    /// The reasons the worker is not ready; empty when it is.
    pub fn not_ready(&self) -> Vec<&'static str> {
        let mut why = Vec::new();
        if self.assigned.load(Ordering::Relaxed) == 0 {
            why.push("no partition assigned");
        }
        if !self.broker_up.load(Ordering::Relaxed) {
            why.push("no broker reachable");
        }
        if !self.lake_writable.load(Ordering::Relaxed) {
            why.push("the last lake write failed");
        }
        why
    }
}
