//! `autotuned process IN.wav OUT.wav`: the same [`Processor`] the JACK thread runs, driven over a
//! mono WAV file on the calling thread.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rtrb::RingBuffer;

use crate::model::Runtime;
use crate::rt::{Meters, Params, Processor, ProcessorRings, SharedParams};
use crate::BLOCK;

/// Corrects `input` into `output` (32-bit float WAV) with `params`; the output is aligned with
/// the input (the model's latency is removed). Returns the number of model faults.
pub fn process_file(
    runtime: &Runtime,
    model: &Path,
    input: &Path,
    output: &Path,
    params: Params,
    progress: bool,
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
    let (_commands, command_rx) = RingBuffer::new(1);
    let (retired_tx, _retired) = RingBuffer::new(1);
    let (events_tx, _events) = RingBuffer::new(1024);
    let meters = Arc::new(Meters::default());
    let mut processor = Processor::new(
        Some(Box::new(inference)),
        ProcessorRings { commands: command_rx, retired: retired_tx, events: events_tx },
        Arc::new(SharedParams::new(params)),
        Arc::clone(&meters),
    );
    let total = samples.len() + latency;
    let blocks = total.div_ceil(BLOCK);
    let bar = if progress { ProgressBar::new(blocks as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} blocks {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut corrected = Vec::with_capacity(blocks * BLOCK);
    let mut block_in = [0.0f32; BLOCK];
    let mut block_out = [0.0f32; BLOCK];
    for b in 0..blocks {
        block_in.fill(0.0);
        let start = (b * BLOCK).min(samples.len());
        let end = ((b + 1) * BLOCK).min(samples.len());
        block_in[..end - start].copy_from_slice(&samples[start..end]);
        processor.process(&block_in, &mut block_out, None);
        corrected.extend_from_slice(&block_out);
        bar.inc(1);
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
    for &s in &corrected[latency..latency + samples.len()] {
        writer.write_sample(s)?;
    }
    writer.finalize()?;
    Ok(meters.faults())
}
