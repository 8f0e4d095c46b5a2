//! What the RT thread reports once per block, in relaxed atomics read by the OSC and supervisor
//! threads.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

/// Callback-time histogram resolution and size: 10 µs buckets up to 5.12 ms, the last one open.
const BUCKET_NS: u64 = 10_000;
const BUCKETS: usize = 512;

/// Callback durations: a lock-free histogram the RT thread adds to and anyone may read.
#[derive(Debug)]
pub struct CallbackTimes {
    buckets: Box<[AtomicU32]>,
    max_ns: AtomicU64,
}

impl Default for CallbackTimes {
    fn default() -> Self {
        CallbackTimes { buckets: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(), max_ns: AtomicU64::new(0) }
    }
}

/// Median, 99th percentile and maximum callback time, µs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CallbackStats {
    pub count: u64,
    pub p50_us: f32,
    pub p99_us: f32,
    pub max_us: f32,
}

impl CallbackTimes {
    pub fn record(&self, ns: u64) {
        let bucket = ((ns / BUCKET_NS) as usize).min(BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.max_ns.fetch_max(ns, Relaxed);
    }

    /// Percentiles are bucket upper bounds (10 µs resolution); the maximum is exact.
    pub fn stats(&self) -> CallbackStats {
        let counts: Vec<u64> = self.buckets.iter().map(|b| u64::from(b.load(Relaxed))).collect();
        let count: u64 = counts.iter().sum();
        let percentile = |q: f64| {
            let rank = (q * count as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            counts.iter().position(|c| {
                seen += c;
                seen >= rank
            })
        };
        let upper_us = |bucket: Option<usize>| bucket.map_or(0.0, |b| ((b as u64 + 1) * BUCKET_NS) as f32 / 1000.0);
        CallbackStats {
            count,
            p50_us: upper_us(percentile(0.5)),
            p99_us: upper_us(percentile(0.99)),
            max_us: self.max_ns.load(Relaxed) as f32 / 1000.0,
        }
    }
}

/// One voice's view of its last block: written by the RT thread, read by anyone.
#[derive(Debug, Default)]
pub struct VoiceMeters {
    detected_hz: AtomicU32,
    confidence: AtomicU32,
    target_hz: AtomicU32,
}

impl VoiceMeters {
    pub fn publish(&self, detected_hz: f32, confidence: f32, target_hz: f32) {
        self.detected_hz.store(detected_hz.to_bits(), Relaxed);
        self.confidence.store(confidence.to_bits(), Relaxed);
        self.target_hz.store(target_hz.to_bits(), Relaxed);
    }

    pub fn detected_hz(&self) -> f32 {
        f32::from_bits(self.detected_hz.load(Relaxed))
    }

    pub fn confidence(&self) -> f32 {
        f32::from_bits(self.confidence.load(Relaxed))
    }

    /// The target the model steers to, Hz; 0 when there is none.
    pub fn target_hz(&self) -> f32 {
        f32::from_bits(self.target_hz.load(Relaxed))
    }
}

/// Written by the RT thread only; any thread may read.
#[derive(Debug)]
pub struct Meters {
    pub callbacks: CallbackTimes,
    voices: Box<[VoiceMeters]>,
    blocks: AtomicU64,
    faults: AtomicU64,
    model_loaded: AtomicBool,
    /// The node's delay from input to output, samples: re-blocking plus the model.
    latency: AtomicU32,
}

impl Default for Meters {
    /// One voice's meters.
    fn default() -> Self {
        Meters::new(1)
    }
}

impl Meters {
    pub fn new(voices: usize) -> Meters {
        Meters {
            callbacks: CallbackTimes::default(),
            voices: (0..voices.max(1)).map(|_| VoiceMeters::default()).collect(),
            blocks: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            model_loaded: AtomicBool::new(false),
            latency: AtomicU32::new(0),
        }
    }

    /// Voice `index`'s meters (0-based); the last voice's for an index past the end.
    pub fn voice(&self, index: usize) -> &VoiceMeters {
        &self.voices[index.min(self.voices.len() - 1)]
    }

    /// Counts a block that ran the model (for every voice at once).
    pub fn count_block(&self) {
        self.blocks.fetch_add(1, Relaxed);
    }

    pub fn count_fault(&self) {
        self.faults.fetch_add(1, Relaxed);
    }

    pub fn set_model_loaded(&self, loaded: bool) {
        self.model_loaded.store(loaded, Relaxed);
    }

    pub fn blocks(&self) -> u64 {
        self.blocks.load(Relaxed)
    }

    pub fn faults(&self) -> u64 {
        self.faults.load(Relaxed)
    }

    pub fn set_latency(&self, samples: u32) {
        self.latency.store(samples, Relaxed);
    }

    pub fn latency(&self) -> u32 {
        self.latency.load(Relaxed)
    }

    pub fn model_loaded(&self) -> bool {
        self.model_loaded.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let t = CallbackTimes::default();
        for us in 1..=100u64 {
            t.record(us * 1000);
        }
        t.record(9_000_000);
        let s = t.stats();
        assert_eq!(s.count, 101);
        assert_eq!(s.p50_us, 60.0);
        assert_eq!(s.p99_us, 110.0, "100 µs falls in the 100..110 µs bucket");
        assert_eq!(s.max_us, 9000.0);
    }
}
