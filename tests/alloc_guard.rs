//! The RT path allocates nothing: 10 000 blocks of the real processor with the default model,
//! parameter changes in every mode, MIDI in and out, and a model swap, under an allocator that aborts on any Rust allocation.
//! (ONNX Runtime's own C mallocs do not go through Rust's allocator; `make malloc-count`
//! measures those.)

mod common;

use std::sync::Arc;

use assert_no_alloc::{assert_no_alloc, AllocDisabler};
use autotuned::rt::{Command, Meters, MidiInput, Mode, NoteTracker, Params, Processor, ProcessorRings, SharedParams};
use autotuned::BLOCK;
use common::{root, runtime, sine};
use rtrb::RingBuffer;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

#[test]
fn ten_thousand_blocks_with_changes_and_a_swap_allocate_nothing() {
    let model = root().join("models/autotune.onnx");
    let (first, _) = runtime().load(&model, None).unwrap();
    let (second, _) = runtime().load(&root().join("tests/fixtures/gain.onnx"), None).unwrap();
    let (mut commands, command_rx) = RingBuffer::new(4);
    let (retired_tx, mut retired) = RingBuffer::new(4);
    let (events_tx, _events) = RingBuffer::new(64);
    let params = Arc::new(SharedParams::new(Params::default()));
    let meters = Arc::new(Meters::default());
    let mut processor = Processor::new(
        Some(Box::new(first)),
        ProcessorRings { commands: command_rx, retired: retired_tx, events: events_tx },
        Arc::clone(&params),
        Arc::clone(&meters),
    );
    let input = sine(180.0, 2.0, 0.3);
    let mut output = vec![0.0f32; BLOCK];
    let blocks_per_loop = input.len() / BLOCK;
    let mut swap = Some(Command::Swap(Box::new(second)));
    let mut finite = true;
    let mut held = MidiInput::default();
    let mut notes = NoteTracker::new(1, 3, 0.5);
    let mut sent = 0usize;

    assert_no_alloc(|| {
        for block in 0..10_000usize {
            if block % 10 == 0 {
                let step = (block / 10 % 20) as f32;
                params.store(&Params {
                    strength: step / 19.0,
                    mode: Mode::ALL[block / 10 % 3],
                    target_hz: 150.0 + step * 10.0,
                    retune_ms: step * 5.0,
                    tuning_hz: 435.0 + step,
                    scale_mask: 0x0fff ^ (1 << (block / 10 % 12)),
                    transpose: step - 10.0,
                    bend_range: 2.0,
                    bypass: block % 1000 >= 990,
                });
            }
            if block == 5000 {
                if let Some(command) = swap.take() {
                    let _ = commands.push(command);
                }
            }
            held.feed(&[if block % 7 == 0 { 0x80 } else { 0x90 }, 50 + (block % 12) as u8, 100]);
            held.feed(&[0xe0, (block % 128) as u8, 64]);
            let start = (block % blocks_per_loop) * BLOCK;
            let report = processor.process(&input[start..start + BLOCK], &mut output, held.target_note(2.0));
            sent += notes.update(report.target_hz.max(1.0).log2() * 12.0, report.confidence).iter().flatten().count();
            finite &= output.iter().all(|x| x.is_finite());
        }
    });

    assert!(finite);
    assert!(sent > 0, "the MIDI out path ran");
    assert_eq!(meters.blocks(), 10_000, "every block ran a model");
    assert_eq!(meters.faults(), 0);
    assert!(retired.pop().is_ok(), "the swapped-out model came back for the supervisor to drop");
}
