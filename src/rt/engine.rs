//! Everything the JACK thread does in one callback, behind [`Engine::process`], for every voice
//! at once: MIDI in, re-blocking to the model's block, the block processor (parameters, one
//! inference for all voices, fallbacks, bypass), the sung notes out as MIDI, meters and callback
//! timing. Runs on the RT thread; the JACK handler only fetches port buffers, and tests drive it
//! with plain slices.

use std::sync::Arc;
use std::time::Instant;

use super::denormals::DenormalGuard;
use super::meters::Meters;
use super::midi::{Held, MidiChannels, MidiInput, NoteMessage, NoteTracker};
use super::processor::Processor;
use super::reblock::Reblocker;
use crate::BLOCK;
use crate::parameters::{BEND_RANGE, OUT_CHANNEL, OUT_MIN_NOTE_MS, OUT_THRESHOLD, TUNING_HZ};
use crate::scales::hz_note;

pub struct Engine {
    processor: Processor,
    reblocker: Reblocker,
    channels: MidiChannels,
    /// Per voice: the notes held on the MIDI input it listens to.
    held: Box<[MidiInput]>,
    held_now: Box<[Held]>,
    /// Per voice: its sung notes, as MIDI out.
    notes: Box<[NoteTracker]>,
    sample_rate: u32,
    /// The rate the model is made for; `None` without a model.
    model_rate: Option<u32>,
    /// False when the period or rate is one the model cannot serve: audio passes through.
    serving: bool,
    meters: Arc<Meters>,
}

impl Engine {
    /// An engine for a server at `sample_rate` with `period`-frame callbacks, for as many voices
    /// as `processor` has. Allocates everything it will use.
    pub fn new(
        mut processor: Processor,
        sample_rate: u32,
        period: usize,
        model_rate: Option<u32>,
        meters: Arc<Meters>,
    ) -> Engine {
        processor.set_sample_rate(sample_rate);
        let voices = processor.voices();
        let mut engine = Engine {
            processor,
            reblocker: Reblocker::new(voices),
            channels: MidiChannels::Omni,
            held: vec![MidiInput::default(); voices].into_boxed_slice(),
            held_now: vec![Held::default(); voices].into_boxed_slice(),
            notes: vec![NoteTracker::new(1, 1, 1.0); voices].into_boxed_slice(),
            sample_rate,
            model_rate,
            serving: false,
            meters,
        };
        engine.set_period(period);
        engine
    }

    /// Which MIDI channels drive which voice (omni unless set).
    pub fn with_midi_channels(mut self, channels: MidiChannels) -> Engine {
        self.channels = channels;
        self
    }

    /// Whether the engine can correct at this period and rate with this model.
    pub fn servable(period: usize, sample_rate: u32, model_rate: Option<u32>) -> bool {
        Reblocker::supports(period) && model_rate.is_none_or(|r| r == sample_rate)
    }

    /// A new callback size (JACK's buffer-size callback, which runs on the RT thread).
    pub fn set_period(&mut self, period: usize) {
        self.reblocker.set_period(period);
        self.serving = Engine::servable(period, self.sample_rate, self.model_rate);
        self.publish_latency();
    }

    /// The delay from input to output, samples: re-blocking plus the model.
    pub fn latency(&self) -> usize {
        self.processor.latency() + self.reblocker.delay()
    }

    /// One callback: `input` and `output` hold one period of every voice, one voice after the
    /// other (`voices × period`); `midi_in` is the period's raw MIDI messages, `midi_out` takes
    /// the note messages to send.
    pub fn process<'a>(
        &mut self,
        input: &[f32],
        output: &mut [f32],
        midi_in: impl Iterator<Item = &'a [u8]>,
        mut midi_out: impl FnMut(&NoteMessage),
    ) {
        let started = Instant::now();
        let _flush = DenormalGuard::new();
        debug_assert!(super::denormals::flushing() || cfg!(not(any(target_arch = "x86_64", target_arch = "aarch64"))));
        for message in midi_in {
            let channel = message.first().map_or(0, |status| usize::from(status & 0x0f));
            match self.channels {
                MidiChannels::Omni => self.held.iter_mut().for_each(|held| held.feed(message)),
                MidiChannels::PerVoice => {
                    if let Some(held) = self.held.get_mut(channel) {
                        held.feed(message);
                    }
                }
            }
        }
        if !self.serving || input.len() != output.len() {
            let n = input.len().min(output.len());
            output[..n].copy_from_slice(&input[..n]);
            output[n..].fill(0.0);
            return;
        }
        let Engine { processor, reblocker, channels, held, held_now, notes, sample_rate, .. } = self;
        let block_ms = BLOCK as f32 * 1000.0 / *sample_rate as f32;
        reblocker.process(input, output, |block_in, block_out| {
            for (k, (now, input)) in held_now.iter_mut().zip(held.iter()).enumerate() {
                *now = Held {
                    note: input.target_note(processor.params(k).get(BEND_RANGE)),
                    classes: input.held_classes(),
                };
            }
            processor.process(block_in, block_out, held_now);
            for (k, (tracker, report)) in notes.iter_mut().zip(processor.reports()).enumerate() {
                let params = processor.params(k);
                let channel = match channels {
                    MidiChannels::Omni => params.get(OUT_CHANNEL) as u8,
                    MidiChannels::PerVoice => (k + 1) as u8,
                };
                tracker.configure(
                    channel,
                    (params.get(OUT_MIN_NOTE_MS) / block_ms).ceil() as u32,
                    params.get(OUT_THRESHOLD),
                );
                let sung_hz = if report.target_hz > 0.0 { report.target_hz } else { report.detected_hz };
                let note = if sung_hz > 0.0 { hz_note(sung_hz, params.get(TUNING_HZ)) } else { -1.0 };
                for message in tracker.update(note, report.confidence).iter().flatten() {
                    midi_out(message);
                }
            }
        });
        self.publish_latency();
        self.meters.callbacks.record(started.elapsed().as_nanos() as u64);
    }

    fn publish_latency(&self) {
        self.meters.set_latency(self.latency() as u32);
    }
}
