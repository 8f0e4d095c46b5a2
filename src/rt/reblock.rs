//! Re-blocking between the server's period and the engine's 512-frame blocks, on the RT thread.
//!
//! Input collects in a linear buffer; every full block is processed into an output ring that
//! starts with `delay` samples of silence, the least that keeps it from running dry for this
//! period: `(512 − gcd(period, 512)) mod 512`. A period of 512 (or a multiple) adds nothing.

use crate::BLOCK;

/// The longest period served; longer ones pass through unprocessed.
pub const MAX_PERIOD: usize = 8192;
const PENDING: usize = MAX_PERIOD + BLOCK;
const RING: usize = MAX_PERIOD + 2 * BLOCK;

/// Preallocated FIFOs between periods of any length and fixed blocks, for `channels` channels
/// that move in step. Buffers are planar: channel `c` of a period of `n` frames is
/// `[c·n, (c+1)·n)`, and of a block `[c·BLOCK, (c+1)·BLOCK)`.
pub struct Reblocker {
    channels: usize,
    /// `channels` rows of `PENDING` samples.
    pending: Box<[f32]>,
    pending_len: usize,
    /// `channels` rows of `RING` samples, all read and written at the same positions.
    ring: Box<[f32]>,
    read: usize,
    queued: usize,
    block_in: Box<[f32]>,
    block_out: Box<[f32]>,
    delay: usize,
}

impl Default for Reblocker {
    /// One channel.
    fn default() -> Self {
        Reblocker::new(1)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Reblocker {
    pub fn new(channels: usize) -> Reblocker {
        let channels = channels.max(1);
        Reblocker {
            channels,
            pending: vec![0.0; channels * PENDING].into_boxed_slice(),
            pending_len: 0,
            ring: vec![0.0; channels * RING].into_boxed_slice(),
            read: 0,
            queued: 0,
            block_in: vec![0.0; channels * BLOCK].into_boxed_slice(),
            block_out: vec![0.0; channels * BLOCK].into_boxed_slice(),
            delay: 0,
        }
    }

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
        for row in self.ring.chunks_exact_mut(RING) {
            row[..self.delay].fill(0.0);
        }
        self.queued = self.delay;
    }

    /// Samples of delay re-blocking adds at the current period.
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// Moves one period of every channel through `block`, which is called once per full block
    /// with (input, output), both `channels × BLOCK`. `input` and `output` are `channels ×
    /// frames` with frames at most `MAX_PERIOD`; anything else gives silence.
    pub fn process(&mut self, input: &[f32], output: &mut [f32], mut block: impl FnMut(&[f32], &mut [f32])) {
        let channels = self.channels;
        let frames = input.len() / channels;
        if input.len() != output.len() || input.len() % channels != 0 || frames > MAX_PERIOD {
            output.fill(0.0);
            return;
        }
        if self.delay == 0 && frames % BLOCK == 0 && self.pending_len == 0 && self.queued == 0 {
            for start in (0..frames).step_by(BLOCK) {
                for c in 0..channels {
                    let from = c * frames + start;
                    self.block_in[c * BLOCK..(c + 1) * BLOCK].copy_from_slice(&input[from..from + BLOCK]);
                }
                block(&self.block_in, &mut self.block_out);
                for c in 0..channels {
                    let to = c * frames + start;
                    output[to..to + BLOCK].copy_from_slice(&self.block_out[c * BLOCK..(c + 1) * BLOCK]);
                }
            }
            return;
        }
        for (row, channel) in self.pending.chunks_exact_mut(PENDING).zip(input.chunks_exact(frames)) {
            row[self.pending_len..self.pending_len + frames].copy_from_slice(channel);
        }
        self.pending_len += frames;
        let mut start = 0;
        while self.pending_len - start >= BLOCK {
            for (c, row) in self.pending.chunks_exact(PENDING).enumerate() {
                self.block_in[c * BLOCK..(c + 1) * BLOCK].copy_from_slice(&row[start..start + BLOCK]);
            }
            block(&self.block_in, &mut self.block_out);
            self.push_block_out();
            start += BLOCK;
        }
        for row in self.pending.chunks_exact_mut(PENDING) {
            row.copy_within(start..self.pending_len, 0);
        }
        self.pending_len -= start;
        // Unreachable with the primed delay; silence beats stale samples if it happens.
        let available = self.queued.min(frames);
        for (row, channel) in self.ring.chunks_exact(RING).zip(output.chunks_exact_mut(frames)) {
            let mut read = self.read;
            for y in &mut channel[..available] {
                *y = row[read];
                read = (read + 1) % RING;
            }
            channel[available..].fill(0.0);
        }
        self.read = (self.read + available) % RING;
        self.queued -= available;
    }

    fn push_block_out(&mut self) {
        let write = (self.read + self.queued) % RING;
        for (row, block) in self.ring.chunks_exact_mut(RING).zip(self.block_out.chunks_exact(BLOCK)) {
            let mut at = write;
            for &x in block {
                row[at] = x;
                at = (at + 1) % RING;
            }
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
    fn channels_move_in_step_and_never_mix() {
        for period in [256, 512, 1000, 1024] {
            let mut r = Reblocker::new(3);
            r.set_period(period);
            let signal = |c: usize, n: usize| (c * 100_000 + n + 1) as f32;
            let periods = 40;
            let mut out = vec![vec![0.0; period * periods]; 3];
            let mut block_calls = 0;
            for p in 0..periods {
                let input: Vec<f32> =
                    (0..3).flat_map(|c| (0..period).map(move |i| signal(c, p * period + i))).collect();
                let mut output = vec![0.0; input.len()];
                r.process(&input, &mut output, |a, b| {
                    b.copy_from_slice(a);
                    block_calls += 1;
                });
                for c in 0..3 {
                    out[c][p * period..(p + 1) * period].copy_from_slice(&output[c * period..(c + 1) * period]);
                }
            }
            assert_eq!(block_calls, period * periods / BLOCK, "one call per block for all channels");
            let delay = r.delay();
            for (c, channel) in out.iter().enumerate() {
                assert!(channel[..delay].iter().all(|x| *x == 0.0));
                for (n, y) in channel.iter().enumerate().skip(delay) {
                    assert_eq!(*y, signal(c, n - delay), "period {period}, channel {c}, sample {n}");
                }
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
