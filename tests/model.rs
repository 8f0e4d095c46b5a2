//! The model host and the block engine against a real ONNX Runtime: contract validation with the
//! fixture models, state pairs, faults falling back to dry audio, and correction on a tone.

mod common;

use std::path::Path;
use std::sync::Arc;

use autotuned::BLOCK;
use autotuned::model::ModelError;
use autotuned::parameters::{BYPASS, FORMANT_PRESERVE, MODE, NOTES, RETUNE_MS, STRENGTH, TARGET_HZ};
use autotuned::rt::{Command, Held, Meters, Mode, Params, Processor, ProcessorRings, RtEvent, SharedParams};
use common::*;
use rtrb::RingBuffer;

fn manual(hz: f32) -> Params {
    Params::default().with(MODE, Mode::Manual.value()).with(TARGET_HZ, hz)
}

fn refusal(name: &str) -> String {
    match runtime().load(&fixture(name), None) {
        Ok(_) => panic!("{name} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_default_models_offer_the_whole_contract() {
    for (file, rate) in [("autotune.onnx", 44_100), ("autotune-48k.onnx", 48_000)] {
        let (_, contract) = runtime().load(&root().join("models").join(file), Some(rate)).unwrap();
        assert_eq!(contract.sample_rate, rate);
        assert!(contract.latency_samples > 0);
        let (_, lacks) = contract.features();
        assert!(lacks.is_empty(), "{file} lacks {lacks:?}");
        assert_eq!(contract.slots.state.len(), 3, "history, state and detector_state pairs");
        assert!(
            contract.detector.as_deref().is_some_and(|d| d.starts_with("learned: ")),
            "{file}: {:?}",
            contract.detector
        );
    }
}

#[test]
fn a_base_contract_model_loads_with_features_reported_missing() {
    let (_, contract) = runtime().load(&fixture("identity.onnx"), None).unwrap();
    let (has, lacks) = contract.features();
    assert!(has.is_empty());
    assert_eq!(
        lacks,
        [
            "retune_ms",
            "tuning_hz",
            "scale_mask",
            "transpose",
            "formant_preserve",
            "formant_shift",
            "detected_pitch",
            "applied_target_hz",
            "state",
            "voice_mix",
            "scale_notes"
        ]
    );
}

#[test]
fn wrong_models_are_refused_with_the_tensor_named() {
    assert!(refusal("wrong_shape.onnx").contains("tensor `audio_buffer`: expected f32 [1, 512], found f32 [1, 256]"));
    assert!(refusal("unknown_input.onnx").contains("unknown input `mystery`"));
    assert!(refusal("missing_output.onnx").contains("output `corrected_audio` is missing"));
    assert!(refusal("corrupt.onnx").contains("ONNX Runtime cannot load it"));
    let wrong_rate = runtime().load(&fixture("identity.onnx"), Some(48_000)).err().unwrap().to_string();
    assert!(wrong_rate.contains("sample_rate") && wrong_rate.contains("48000"), "{wrong_rate}");
    let missing = runtime().load(&fixture("no_such_model.onnx"), None).err().unwrap();
    assert!(matches!(missing, ModelError::Read { .. }), "{missing}");
    let empty = std::env::temp_dir().join(unique("empty")).with_extension("onnx");
    std::fs::write(&empty, b"").unwrap();
    assert!(runtime().load(&empty, None).err().unwrap().to_string().contains("empty"));
    std::fs::remove_file(empty).unwrap();
}

struct Rig {
    processor: Processor,
    commands: rtrb::Producer<Command>,
    retired: rtrb::Consumer<Box<autotuned::rt::Inference>>,
    events: rtrb::Consumer<RtEvent>,
    params: Arc<SharedParams>,
    meters: Arc<Meters>,
}

fn rig(model: &Path, params: Params) -> Rig {
    let (inference, _) = runtime().load(model, None).unwrap();
    let (commands, command_rx) = RingBuffer::new(4);
    let (retired_tx, retired) = RingBuffer::new(4);
    let (events_tx, events) = RingBuffer::new(1024);
    let params = Arc::new(SharedParams::new(params));
    let meters = Arc::new(Meters::default());
    let processor = Processor::new(
        Some(Box::new(inference)),
        ProcessorRings { commands: command_rx, retired: retired_tx, events: events_tx },
        vec![Arc::clone(&params)],
        Arc::clone(&meters),
    );
    Rig { processor, commands, retired, events, params, meters }
}

/// A processor over `model` loaded for one voice per entry of `params`.
fn voices_rig(model: &Path, params: &[Params]) -> (Processor, Vec<Arc<SharedParams>>, Arc<Meters>) {
    let (inference, _) = runtime().load_voices(model, None, params.len()).unwrap();
    let (_commands, command_rx) = RingBuffer::new(4);
    let (retired_tx, _retired) = RingBuffer::new(4);
    let (events_tx, _events) = RingBuffer::new(1024);
    let shared: Vec<_> = params.iter().map(|p| Arc::new(SharedParams::new(*p))).collect();
    let meters = Arc::new(Meters::new(params.len()));
    let processor = Processor::new(
        Some(Box::new(inference)),
        ProcessorRings { commands: command_rx, retired: retired_tx, events: events_tx },
        shared.clone(),
        Arc::clone(&meters),
    );
    (processor, shared, meters)
}

/// Runs whole blocks of every voice (`inputs[k]` is voice k's signal); returns each voice's output.
fn run_voices(processor: &mut Processor, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let voices = inputs.len();
    let blocks = inputs[0].len() / BLOCK;
    let mut outputs = vec![Vec::new(); voices];
    let (mut block_in, mut block_out) = (vec![0.0; voices * BLOCK], vec![0.0; voices * BLOCK]);
    for b in 0..blocks {
        for (k, input) in inputs.iter().enumerate() {
            block_in[k * BLOCK..(k + 1) * BLOCK].copy_from_slice(&input[b * BLOCK..(b + 1) * BLOCK]);
        }
        processor.process(&block_in, &mut block_out, &vec![Held::default(); voices]);
        for (k, output) in outputs.iter_mut().enumerate() {
            output.extend_from_slice(&block_out[k * BLOCK..(k + 1) * BLOCK]);
        }
    }
    outputs
}

#[test]
fn a_model_without_a_voice_axis_serves_one_voice_only() {
    let e = runtime().load_voices(&fixture("identity.onnx"), None, 4).err().unwrap().to_string();
    assert!(e.contains("no voice axis") && e.contains("4 voices"), "{e}");
    let (inference, contract) = runtime().load_voices(&root().join("models/autotune.onnx"), None, 8).unwrap();
    assert_eq!(inference.voices(), 8);
    assert!(contract.batched);
    assert!(contract.inputs.iter().chain(&contract.outputs).all(|(_, shape)| shape[0] == 8), "{contract}");
}

#[test]
fn voices_in_one_run_sound_as_each_would_alone() {
    let params = [manual(196.0), Params::default().with(STRENGTH, 0.6), manual(330.0).with(RETUNE_MS, 40.0)];
    let inputs = [sine(203.0, 1.0, 0.3), sine(290.0, 1.0, 0.2), sine(311.0, 1.0, 0.25)];
    let blocks = inputs[0].len() / BLOCK;
    let inputs: Vec<Vec<f32>> = inputs.iter().map(|x| x[..blocks * BLOCK].to_vec()).collect();
    let model = root().join("models/autotune.onnx");
    let (mut together, _, meters) = voices_rig(&model, &params);
    let outputs = run_voices(&mut together, &inputs);
    for (k, (p, input)) in params.iter().zip(&inputs).enumerate() {
        let mut alone = rig(&model, *p);
        let expected = run(&mut alone, input);
        let worst = outputs[k].iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-4, "voice {} differs from the same voice alone by up to {worst}", k + 1);
        assert_eq!(meters.voice(k).target_hz(), alone.meters.voice(0).target_hz(), "voice {}", k + 1);
    }
    assert_ne!(outputs[0], outputs[1]);
}

#[test]
fn a_voice_whose_output_is_not_finite_falls_back_alone() {
    let params = [Params::default().with(STRENGTH, 0.7), manual(1500.0)];
    let (mut processor, _, meters) = voices_rig(&fixture("nan.onnx"), &params);
    let inputs = vec![sine(300.0, 0.2, 0.3)[..8 * BLOCK].to_vec(), sine(200.0, 0.2, 0.3)[..8 * BLOCK].to_vec()];
    let outputs = run_voices(&mut processor, &inputs);
    assert_eq!(outputs, inputs, "voice 1 is the model's (identity) output, voice 2 the dry fallback");
    assert_eq!(meters.faults(), 8, "one fault per block");
    assert_eq!(processor.reports()[0].confidence, 0.7, "voice 1 ran the model");
    assert_eq!(processor.reports()[1].confidence, 0.0, "voice 2 reports nothing");
    assert_eq!(meters.voice(0).confidence(), 0.7);
}

fn run(rig: &mut Rig, input: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; input.len()];
    for (i, o) in input.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BLOCK)) {
        rig.processor.process(i, o, &[Held::default()]);
    }
    out
}

#[test]
fn a_state_pair_is_fed_back_every_block() {
    let mut rig = rig(&fixture("delay.onnx"), Params::default());
    let input: Vec<f32> = (0..BLOCK * 6).map(|i| i as f32 / 10_000.0).collect();
    let out = run(&mut rig, &input);
    // The delay fixture plays the previous block; the dry path is aligned to its 512 latency.
    assert_eq!(&out[BLOCK..], &input[..input.len() - BLOCK]);
}

#[test]
fn nan_from_the_model_falls_back_to_dry_audio_and_is_counted() {
    let mut rig = rig(&fixture("nan.onnx"), Params::default());
    let input = sine(300.0, 0.5, 0.3);
    let blocks = input.len() / BLOCK;
    let clean = run(&mut rig, &input[..blocks * BLOCK]);
    assert_eq!(clean, input[..blocks * BLOCK], "identity below 1 kHz target");
    rig.params.store(&manual(1500.0));
    let out = run(&mut rig, &input[..blocks * BLOCK]);
    assert!(out.iter().all(|x| x.is_finite()));
    assert_eq!(out, input[..blocks * BLOCK], "fallback is the dry input (latency 0)");
    assert_eq!(rig.meters.faults(), blocks as u64);
    assert!(matches!(rig.events.pop().unwrap(), RtEvent::Fault { kind: autotuned::rt::FaultKind::NonFinite, .. }));
}

#[test]
fn persistent_faults_unload_the_model() {
    let mut rig = rig(&fixture("nan.onnx"), manual(1500.0));
    let input = vec![0.1f32; BLOCK * 101];
    run(&mut rig, &input);
    let mut unloaded = false;
    while let Ok(e) = rig.events.pop() {
        unloaded |= matches!(e, RtEvent::ModelUnloaded { after_faults: 100 });
    }
    assert!(unloaded);
    assert!(rig.retired.pop().is_ok(), "the model went back to the supervisor");
    assert!(!rig.meters.model_loaded());
    assert_eq!(run(&mut rig, &input[..BLOCK]), &input[..BLOCK]);
}

#[test]
fn non_finite_input_never_reaches_the_output() {
    let mut rig = rig(&root().join("models/autotune.onnx"), Params::default());
    let mut input = sine(200.0, 0.3, 0.3);
    input[1000] = f32::NAN;
    input[3000] = f32::INFINITY;
    let out = run(&mut rig, &input[..(input.len() / BLOCK) * BLOCK]);
    assert!(out.iter().all(|x| x.is_finite()));
}

#[test]
fn the_engine_corrects_a_tone_and_bypass_crossfades() {
    let mut rig = rig(&root().join("models/autotune.onnx"), manual(196.0));
    let sung = 196.0 * 2f32.powf(-45.0 / 1200.0);
    let input = sine(sung, 4.0, 0.3);
    let half = input.len() / BLOCK / 2 * BLOCK;
    let corrected = run(&mut rig, &input[..half]);
    let error = cents(zero_crossing_hz(&corrected[half / 2..]), 196.0);
    assert!(error.abs() < 2.0, "{error} cents from the target");

    rig.params.store(&manual(196.0).with(BYPASS, 1.0));
    let out = run(&mut rig, &input[half..2 * half]);
    let joined: Vec<f32> = corrected.iter().chain(&out).copied().collect();
    let max_step = joined.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0f32, f32::max);
    // A sine's largest step, plus what a 256-sample linear fade between two such sines adds.
    let limit = std::f32::consts::TAU * 196.0 / RATE as f32 * 0.3 * 1.05 + 0.6 / 256.0;
    assert!(max_step <= limit, "a click of {max_step} around the bypass crossfade (limit {limit})");
    let latency = rig.processor.latency();
    let tail = &joined[joined.len() - 10_000..];
    assert_eq!(
        tail,
        &input[2 * half - 10_000 - latency..2 * half - latency],
        "bypassed output is the input delayed by the latency"
    );
}

#[test]
fn a_swap_takes_effect_at_the_next_block_and_the_old_model_is_retired() {
    let mut rig = rig(&fixture("identity.onnx"), Params::default());
    let input = vec![0.5f32; BLOCK * 2];
    assert_eq!(run(&mut rig, &input[..BLOCK]), &input[..BLOCK]);
    let (gain, _) = runtime().load(&fixture("gain.onnx"), None).unwrap();
    assert!(rig.commands.push(Command::Swap(Box::new(gain))).is_ok());
    assert_eq!(run(&mut rig, &input[..BLOCK]), vec![0.25f32; BLOCK]);
    assert!(rig.retired.pop().is_ok());
    assert!(matches!(rig.events.pop().unwrap(), RtEvent::ModelSwapped { block: 1 }));
    assert!(rig.commands.push(Command::Unload).is_ok());
    assert_eq!(run(&mut rig, &input[..BLOCK]), &input[..BLOCK]);
    assert!(!rig.meters.model_loaded());
}

#[test]
fn truncated_and_unreadable_models_each_give_one_clear_error() {
    let dir = std::env::temp_dir().join(unique("at-bad-models"));
    std::fs::create_dir_all(&dir).unwrap();
    let full = std::fs::read(root().join("models/autotune.onnx")).unwrap();
    let truncated = dir.join("truncated.onnx");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let e = runtime().load(&truncated, None).err().unwrap().to_string();
    assert!(e.contains("truncated.onnx") && e.contains("cannot load"), "{e}");
    let unreadable = dir.join("directory.onnx");
    std::fs::create_dir_all(&unreadable).unwrap();
    let e = runtime().load(&unreadable, None).err().unwrap().to_string();
    assert!(e.contains("cannot read model") && e.contains("directory.onnx"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn parameter_changes_land_between_blocks_without_a_click() {
    let mut rig = rig(&root().join("models/autotune.onnx"), Params::default());
    let input = sine(200.0, 3.0, 0.3);
    let blocks = input.len() / BLOCK;
    let mut output = vec![0.0f32; blocks * BLOCK];
    for b in 0..blocks {
        let step = b / 5;
        let params = Params::default()
            .with(STRENGTH, if step % 3 == 0 { 0.0 } else { 1.0 })
            .with(MODE, if step % 2 == 0 { Mode::Auto } else { Mode::Manual }.value())
            .with(TARGET_HZ, if step % 4 < 2 { 180.0 } else { 230.0 })
            .with(NOTES, if step % 5 == 0 { 2741.0 } else { 4095.0 })
            .with(RETUNE_MS, if step % 6 == 0 { 0.0 } else { 40.0 });
        rig.params.store(&params);
        rig.processor.process(
            &input[b * BLOCK..(b + 1) * BLOCK],
            &mut output[b * BLOCK..(b + 1) * BLOCK],
            &[Held::default()],
        );
    }
    // The heads read continuously, so the output's steepest step is a sine's at the highest
    // pitch the changes ask for (230 Hz, 0.3); a click would be a jump of a good part of 0.3.
    let limit = std::f32::consts::TAU * 230.0 / RATE as f32 * 0.3 * 1.25;
    let (at, step) = output
        .windows(2)
        .enumerate()
        .skip(BLOCK)
        .map(|(i, w)| (i, (w[1] - w[0]).abs()))
        .fold((0, 0.0f32), |m, (i, s)| if s > m.1 { (i, s) } else { m });
    assert!(step <= limit, "a step of {step} at sample {at} (block {}), limit {limit}", at / BLOCK);
}

#[test]
fn a_model_whose_latency_the_dry_path_cannot_follow_is_refused() {
    let e = refusal("long_latency.onnx");
    assert!(e.contains("latency_samples") && e.contains("9000") && e.contains("8192"), "{e}");
}

#[test]
fn a_table_row_with_a_model_input_feeds_the_model() {
    // formant_preserve is one row in the parameter table and nothing else; the fixture's output
    // is its input times that value.
    let mut rig = rig(&fixture("formant_gain.onnx"), Params::default().with(FORMANT_PRESERVE, 0.25));
    let input = sine(220.0, 0.2, 0.5);
    let mut output = vec![0.0f32; BLOCK];
    rig.processor.process(&input[..BLOCK], &mut output, &[Held::default()]);
    let ratio = output.iter().map(|x| x.abs()).sum::<f32>() / input[..BLOCK].iter().map(|x| x.abs()).sum::<f32>();
    assert!((ratio - 0.25).abs() < 1e-4, "{ratio}");
    rig.params.store(&Params::default().with(FORMANT_PRESERVE, 1.0));
    rig.processor.process(&input[BLOCK..2 * BLOCK], &mut output, &[Held::default()]);
    assert!(output.iter().zip(&input[BLOCK..]).all(|(y, x)| (y - x).abs() < 1e-6));
}
