//! `autotuned process IN.wav OUT.wav [--plot pitch.png]`: the same [`Processor`] the JACK thread
//! runs, driven over a mono WAV file on the calling thread, and optionally a picture of the
//! input, target and output pitch.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rtrb::RingBuffer;

use crate::BLOCK;
use crate::model::Runtime;
use crate::parameters::{MODE, STRENGTH, TUNING_HZ};
use crate::plot::{self, Track};
use crate::rt::{BlockReport, Inference, Meters, Mode, Params, Processor, ProcessorRings, SharedParams};

/// A processor over `inference` with `params` and rings nobody else holds.
fn processor(inference: Inference, params: Params, meters: &Arc<Meters>) -> Processor {
    let (_commands, command_rx) = RingBuffer::new(1);
    let (retired_tx, _retired) = RingBuffer::new(1);
    let (events_tx, _events) = RingBuffer::new(1024);
    Processor::new(
        Some(Box::new(inference)),
        ProcessorRings { commands: command_rx, retired: retired_tx, events: events_tx },
        vec![Arc::new(SharedParams::new(params))],
        Arc::clone(meters),
    )
}

/// Runs `samples` (zero-padded to whole blocks) through `processor`; returns the output and
/// each block's report.
fn run(processor: &mut Processor, samples: &[f32], bar: &ProgressBar) -> (Vec<f32>, Vec<BlockReport>) {
    let blocks = samples.len().div_ceil(BLOCK);
    let mut out = Vec::with_capacity(blocks * BLOCK);
    let mut reports = Vec::with_capacity(blocks);
    let mut block_in = [0.0f32; BLOCK];
    let mut block_out = [0.0f32; BLOCK];
    for b in 0..blocks {
        block_in.fill(0.0);
        let start = (b * BLOCK).min(samples.len());
        let end = ((b + 1) * BLOCK).min(samples.len());
        block_in[..end - start].copy_from_slice(&samples[start..end]);
        processor.process(&block_in, &mut block_out, &[None]);
        reports.push(processor.reports()[0]);
        out.extend_from_slice(&block_out);
        bar.inc(1);
    }
    (out, reports)
}

/// Corrects `input` into `output` (32-bit float WAV) with `params`; the output is aligned with
/// the input (the model's latency is removed). Returns the number of model faults.
pub fn process_file(
    runtime: &Runtime,
    model: &Path,
    input: &Path,
    output: &Path,
    params: Params,
    progress: bool,
    plot_path: Option<&Path>,
) -> Result<u64> {
    let mut reader = hound::WavReader::open(input).with_context(|| format!("reading {}", input.display()))?;
    let spec = reader.spec();
    if spec.channels != 1 {
        bail!(
            "{}: {} channels; autotuned processes mono files (split the channels first)",
            input.display(),
            spec.channels
        );
    }
    let (inference, contract) = runtime.load(model, None)?;
    if spec.sample_rate != contract.sample_rate {
        bail!(
            "{}: {} Hz, but the model {} is made for {} Hz (resample the file or pick the model for its rate)",
            input.display(),
            spec.sample_rate,
            model.display(),
            contract.sample_rate
        );
    }
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader.samples::<i32>().map(|s| s.map(|v| v as f32 * scale)).collect::<Result<_, _>>()?
        }
    };
    let latency = contract.latency_samples;
    let meters = Arc::new(Meters::default());
    let mut corrector = processor(inference, params, &meters);
    let mut padded = samples.clone();
    padded.resize(samples.len() + latency, 0.0);
    let blocks = padded.len().div_ceil(BLOCK) * if plot_path.is_some() { 2 } else { 1 };
    let bar = if progress { ProgressBar::new(blocks as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} blocks {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (corrected, reports) = run(&mut corrector, &padded, &bar);
    let corrected = &corrected[latency..latency + samples.len()];
    if let Some(path) = plot_path {
        // The output's pitch, by the model's own detector listening to it without correcting.
        let (listener, _) = runtime.load(model, None)?;
        let listen = params.with(STRENGTH, 0.0).with(MODE, Mode::Auto.value());
        let (_, heard) = run(&mut processor(listener, listen, &Arc::new(Meters::default())), corrected, &bar);
        let sung: Vec<f32> = reports.iter().map(|r| r.detected_hz).collect();
        let target: Vec<f32> = reports.iter().map(|r| if r.detected_hz > 0.0 { r.target_hz } else { 0.0 }).collect();
        let result: Vec<f32> = heard.iter().map(|r| r.detected_hz).collect();
        let tracks = [
            Track { label: "target", hz: &target, color: plot::TARGET, width: 8 },
            Track { label: "input", hz: &sung, color: plot::INPUT, width: 2 },
            Track { label: "output", hz: &result, color: plot::OUTPUT, width: 2 },
        ];
        let name = |p: &Path| p.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let title = format!("{} → {} (pitch, {})", name(input), name(output), contract.name);
        plot::pitch_png(path, &title, BLOCK as f32 / spec.sample_rate as f32, params.get(TUNING_HZ), &tracks)
            .with_context(|| format!("plotting {}", path.display()))?;
    }
    bar.finish_and_clear();
    let out_spec = hound::WavSpec {
        channels: 1,
        sample_rate: spec.sample_rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer =
        hound::WavWriter::create(output, out_spec).with_context(|| format!("writing {}", output.display()))?;
    for &s in corrected {
        writer.write_sample(s)?;
    }
    writer.finalize()?;
    Ok(meters.faults())
}
