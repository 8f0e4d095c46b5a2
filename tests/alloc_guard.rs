//! The whole JACK-thread path allocates nothing: 4 000 callbacks of the real engine (MIDI in,
//! re-blocking, the processor with the default model, MIDI out, meters, timing) with parameter
//! changes to every row of the table, a period change and a model swap, for one voice and for
//! eight (each with its own changes and MIDI channel), under an allocator that aborts on any Rust
//! allocation. (ONNX Runtime's own C mallocs do not go through Rust's
//! allocator; `make malloc-count` measures those.)

mod common;

use std::sync::Arc;

use assert_no_alloc::{AllocDisabler, assert_no_alloc};
use autotuned::parameters::{BYPASS, Kind, MODE, ids};
use autotuned::rt::{
    Command, Engine, Inference, Meters, MidiChannels, Params, Processor, ProcessorRings, SharedParams,
};
use common::{RATE, root, runtime, sine};
use rtrb::RingBuffer;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

/// Every parameter somewhere in its range, moving with `step`.
fn params_at(step: usize) -> Params {
    let mut p = Params::default();
    for id in ids() {
        let row = id.row();
        let value = match &row.kind {
            Kind::Float { min, max } => min + (max - min) * (step % 20) as f32 / 19.0,
            Kind::Int { min, max } => (*min + (step as i32 % (max - min + 1))) as f32,
            Kind::Toggle => 0.0,
            Kind::Choice(c) => (step % c.names.len()) as f32,
            Kind::Mask => f32::from(0x0fff ^ (1u16 << (step % 12))),
        };
        p.set(id, value);
    }
    p.with(BYPASS, if step % 50 == 49 { 1.0 } else { 0.0 }).with(MODE, (step % 3) as f32)
}

#[test]
fn four_thousand_callbacks_with_changes_a_period_change_and_a_swap_allocate_nothing() {
    let (first, _) = runtime().load(&root().join("models/autotune.onnx"), None).unwrap();
    let (second, _) = runtime().load(&root().join("tests/fixtures/gain.onnx"), None).unwrap();
    callbacks_allocate_nothing(first, second, MidiChannels::Omni);
}

#[test]
fn eight_voices_with_per_voice_changes_and_a_swap_allocate_nothing() {
    let model = root().join("models/autotune.onnx");
    let (first, _) = runtime().load_voices(&model, None, 8).unwrap();
    let (second, _) = runtime().load_voices(&model, None, 8).unwrap();
    callbacks_allocate_nothing(first, second, MidiChannels::PerVoice);
}

/// 4 000 callbacks of an engine running `first` (for as many voices as it serves), each voice's
/// parameters changing on its own every 10 callbacks, MIDI on every channel, the period going
/// from 256 to 1024 half way, and `second` swapped in at callback 3000.
fn callbacks_allocate_nothing(first: Inference, second: Inference, channels: MidiChannels) {
    let voices = first.voices();
    let (mut commands, command_rx) = RingBuffer::new(4);
    let (retired_tx, mut retired) = RingBuffer::new(4);
    let (events_tx, _events) = RingBuffer::new(64);
    let params: Vec<_> = (0..voices).map(|_| Arc::new(SharedParams::new(Params::default()))).collect();
    let meters = Arc::new(Meters::new(voices));
    let processor = Processor::new(
        Some(Box::new(first)),
        ProcessorRings { commands: command_rx, retired: retired_tx, events: events_tx },
        params.clone(),
        Arc::clone(&meters),
    );
    let mut engine = Engine::new(processor, RATE, 256, Some(RATE), Arc::clone(&meters)).with_midi_channels(channels);
    let signals: Vec<Vec<f32>> = (0..voices).map(|k| sine(150.0 + 20.0 * k as f32, 2.0, 0.3)).collect();
    let mut input = vec![0.0f32; voices * 1024];
    let mut output = vec![0.0f32; voices * 1024];
    let mut swap = Some(Command::Swap(Box::new(second)));
    let mut finite = true;
    let mut sent = 0usize;
    let mut period = 256usize;
    let mut position = 0usize;

    assert_no_alloc(|| {
        for callback in 0..4000usize {
            if callback % 10 == 0 {
                for (k, shared) in params.iter().enumerate() {
                    shared.store(&params_at(callback / 10 + 7 * k));
                }
            }
            if callback == 2000 {
                period = 1024;
                engine.set_period(period);
            }
            if callback == 3000 {
                if let Some(command) = swap.take() {
                    let _ = commands.push(command);
                }
            }
            let channel = (callback % 16) as u8;
            let note_on = [0x90 | channel, 50 + (callback % 12) as u8, 100];
            let note_off = [0x80 | channel, 50 + ((callback + 5) % 12) as u8, 0];
            let bend = [0xe0 | channel, (callback % 128) as u8, 64];
            let midi: [&[u8]; 3] = [&note_on, &note_off, &bend];
            if position + period > signals[0].len() {
                position = 0;
            }
            for (row, signal) in input[..voices * period].chunks_exact_mut(period).zip(&signals) {
                row.copy_from_slice(&signal[position..position + period]);
            }
            engine.process(&input[..voices * period], &mut output[..voices * period], midi.into_iter(), |_| sent += 1);
            position += period;
            finite &= output[..voices * period].iter().all(|x| x.is_finite());
        }
    });

    assert!(finite);
    assert!(sent > 0, "the MIDI out path ran");
    assert_eq!(meters.blocks(), (2000 * 256 + 2000 * 1024) / 512, "every block ran a model");
    assert_eq!(meters.callbacks.stats().count, 4000, "every callback was timed");
    assert_eq!(meters.faults(), 0);
    assert!(retired.pop().is_ok(), "the swapped-out model came back for the supervisor to drop");
}
