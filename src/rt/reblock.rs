//! Re-blocking between the server's period and the engine's 512-frame blocks, on the RT thread.
//!
//! Input collects in a linear buffer; every full block is processed into an output ring that
//! starts with `delay` samples of silence, the least that keeps it from running dry for this
//! period: `(512 − gcd(period, 512)) mod 512`. A period of 512 (or a multiple) adds nothing.

use crate::BLOCK;

/// The longest period served; longer ones pass through unprocessed.
pub const MAX_PERIOD: usize = 8192;

/// Preallocated FIFOs between periods of any length and fixed blocks.
pub struct Reblocker {
    pending: Box<[f32]>,
    pending_len: usize,
    ring: Box<[f32]>,
    read: usize,
    queued: usize,
    scratch: Box<[f32]>,
    delay: usize,
}

impl Default for Reblocker {
    fn default() -> Self {
        Reblocker {
            pending: vec![0.0; MAX_PERIOD + BLOCK].into_boxed_slice(),
            pending_len: 0,
            ring: vec![0.0; MAX_PERIOD + 2 * BLOCK].into_boxed_slice(),
            read: 0,
            queued: 0,
            scratch: vec![0.0; BLOCK].into_boxed_slice(),
            delay: 0,
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Reblocker {
    /// Whether periods of this length can be served.
    pub fn supports(period: usize) -> bool {
        (1..=MAX_PERIOD).contains(&period)
    }

    /// Starts over for a new period: clears both FIFOs and primes the output with the delay
    /// this period needs. Allocation-free, so it may run on the RT thread.
    pub fn set_period(&mut self, period: usize) {
        self.delay = (BLOCK - gcd(period.max(1), BLOCK)) % BLOCK;
        self.pending_len = 0;
        self.read = 0;
        self.ring[..self.delay].fill(0.0);
        self.queued = self.delay;
    }

    /// Samples of delay re-blocking adds at the current period.
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// Moves one period through `block`, which is called once per full 512-sample block with
    /// (input, output). `input` and `output` must be the same length, at most `MAX_PERIOD`.
    pub fn process(&mut self, input: &[f32], output: &mut [f32], mut block: impl FnMut(&[f32], &mut [f32])) {
        if input.len() != output.len() || input.len() > MAX_PERIOD {
            output.fill(0.0);
            return;
        }
        if self.delay == 0 && input.len() % BLOCK == 0 && self.pending_len == 0 && self.queued == 0 {
            for (i, o) in input.chunks_exact(BLOCK).zip(output.chunks_exact_mut(BLOCK)) {
                block(i, o);
            }
            return;
        }
        self.pending[self.pending_len..self.pending_len + input.len()].copy_from_slice(input);
        self.pending_len += input.len();
        let mut start = 0;
        while self.pending_len - start >= BLOCK {
            block(&self.pending[start..start + BLOCK], &mut self.scratch);
            self.push_scratch();
            start += BLOCK;
        }
        self.pending.copy_within(start..self.pending_len, 0);
        self.pending_len -= start;
        for y in output.iter_mut() {
            if self.queued == 0 {
                // Unreachable with the primed delay; silence beats stale samples if it happens.
                *y = 0.0;
                continue;
            }
            *y = self.ring[self.read];
            self.read = (self.read + 1) % self.ring.len();
            self.queued -= 1;
        }
    }

    fn push_scratch(&mut self) {
        let len = self.ring.len();
        let mut write = (self.read + self.queued) % len;
        for &x in self.scratch.iter() {
            self.ring[write] = x;
            write = (write + 1) % len;
        }
        self.queued += BLOCK;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(period: usize) -> (Vec<f32>, usize) {
        let mut r = Reblocker::default();
        r.set_period(period);
        let input: Vec<f32> = (1..=period * 40).map(|i| i as f32).collect();
        let mut out = vec![0.0; input.len()];
        for (i, o) in input.chunks(period).zip(out.chunks_mut(period)) {
            r.process(i, o, |a, b| b.copy_from_slice(a));
        }
        (out, r.delay())
    }

    #[test]
    fn every_period_delays_by_exactly_the_reported_amount() {
        for period in [32, 64, 100, 256, 500, 512, 1000, 1024, 1536, 4096] {
            let (out, delay) = run(period);
            assert!(out[..delay].iter().all(|x| *x == 0.0), "period {period}");
            for (n, y) in out.iter().enumerate().skip(delay) {
                assert_eq!(*y, (n - delay + 1) as f32, "period {period} at {n}");
            }
        }
    }

    #[test]
    fn whole_blocks_add_no_delay() {
        assert_eq!(run(512).1, 0);
        assert_eq!(run(2048).1, 0);
        assert_eq!(run(256).1, 256);
        assert_eq!(run(1000).1, 504);
        assert_eq!(run(64).1, 448);
    }
}
