//! `autotuned process IN.wav OUT.wav [--link 1,2] [--plot pitch.png]`: the same [`Processor`] the
//! JACK thread runs, driven over a WAV file on the calling thread (each channel a voice), and
//! optionally a picture of the input, target and output pitch of the first.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rtrb::RingBuffer;

use crate::BLOCK;
use crate::model::Runtime;
use crate::parameters::{MODE, STRENGTH, TUNING_HZ};
use crate::plot::{self, Track};
use crate::rt::{BlockReport, Held, Inference, Meters, Mode, Params, Processor, ProcessorRings, SharedParams};

/// A processor over `inference` with one voice per entry of `params` and rings nobody else holds.
fn processor(inference: Inference, params: &[Params], meters: &Arc<Meters>) -> Processor {
    let (_commands, command_rx) = RingBuffer::new(1);
    let (retired_tx, _retired) = RingBuffer::new(1);
    let (events_tx, _events) = RingBuffer::new(1024);
    Processor::new(
        Some(Box::new(inference)),
        ProcessorRings { commands: command_rx, retired: retired_tx, events: events_tx },
        params.iter().map(|p| Arc::new(SharedParams::new(*p))).collect(),
        Arc::clone(meters),
    )
}

/// Runs `channels` (one signal per voice, all as long, zero-padded to whole blocks) through
/// `processor`; returns each voice's output, and voice 1's report and fed strength per block.
fn run(
    processor: &mut Processor,
    channels: &[Vec<f32>],
    bar: &ProgressBar,
) -> (Vec<Vec<f32>>, Vec<(BlockReport, f32)>) {
    let voices = channels.len();
    let len = channels[0].len();
    let blocks = len.div_ceil(BLOCK);
    let mut out = vec![Vec::with_capacity(blocks * BLOCK); voices];
    let mut reports = Vec::with_capacity(blocks);
    let mut block_in = vec![0.0f32; voices * BLOCK];
    let mut block_out = vec![0.0f32; voices * BLOCK];
    let nothing_held = vec![Held::default(); voices];
    for b in 0..blocks {
        block_in.fill(0.0);
        let (start, end) = ((b * BLOCK).min(len), ((b + 1) * BLOCK).min(len));
        for (row, channel) in block_in.chunks_exact_mut(BLOCK).zip(channels) {
            row[..end - start].copy_from_slice(&channel[start..end]);
        }
        processor.process(&block_in, &mut block_out, &nothing_held);
        reports.push((processor.reports()[0], processor.fed()[0].strength));
        for (voice, row) in out.iter_mut().zip(block_out.chunks_exact(BLOCK)) {
            voice.extend_from_slice(row);
        }
        bar.inc(1);
    }
    (out, reports)
}

/// How a file is corrected.
pub struct Job<'a> {
    /// Every channel's parameters.
    pub params: Params,
    /// Groups of channels (0-based) analysed together and corrected alike.
    pub links: &'a [Vec<usize>],
    pub progress: bool,
    /// Where to draw the first channel's pitch, if anywhere.
    pub plot: Option<&'a Path>,
}

/// Corrects `input` into `output` (32-bit float WAV, as many channels), each channel a voice of
/// one model run per block; the output is aligned with the input (the model's latency is
/// removed). Returns the number of model faults.
pub fn process_file(runtime: &Runtime, model: &Path, input: &Path, output: &Path, job: &Job) -> Result<u64> {
    let Job { params, links, progress, plot: plot_path } = *job;
    let mut reader = hound::WavReader::open(input).with_context(|| format!("reading {}", input.display()))?;
    let spec = reader.spec();
    let voices = usize::from(spec.channels);
    if let Some(group) = links.iter().find(|g| g.iter().any(|c| *c >= voices)) {
        let named: Vec<String> = group.iter().map(|c| (c + 1).to_string()).collect();
        bail!("--link {}: {} has {voices} channels", named.join(","), input.display());
    }
    let (mut inference, contract) = runtime.load_voices(model, None, voices)?;
    if !links.is_empty() && !inference.links() {
        bail!("--link: the model {} has no voice_mix input, so it cannot link voices", model.display());
    }
    inference.link(links);
    if spec.sample_rate != contract.sample_rate {
        bail!(
            "{}: {} Hz, but the model {} is made for {} Hz (resample the file or pick the model for its rate)",
            input.display(),
            spec.sample_rate,
            model.display(),
            contract.sample_rate
        );
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader.samples::<i32>().map(|s| s.map(|v| v as f32 * scale)).collect::<Result<_, _>>()?
        }
    };
    let frames = interleaved.len() / voices;
    let latency = contract.latency_samples;
    let padded: Vec<Vec<f32>> = (0..voices)
        .map(|c| {
            let mut channel: Vec<f32> = interleaved.iter().skip(c).step_by(voices).copied().collect();
            channel.resize(frames + latency, 0.0);
            channel
        })
        .collect();
    let meters = Arc::new(Meters::new(voices));
    let mut corrector = processor(inference, &vec![params; voices], &meters);
    corrector.set_sample_rate(spec.sample_rate);
    let blocks = (frames + latency).div_ceil(BLOCK) * if plot_path.is_some() { 2 } else { 1 };
    let bar = if progress { ProgressBar::new(blocks as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} blocks {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (corrected, reports) = run(&mut corrector, &padded, &bar);
    let corrected: Vec<&[f32]> = corrected.iter().map(|c| &c[latency..latency + frames]).collect();
    if let Some(path) = plot_path {
        // Voice 1's output pitch, by the model's own detector listening to it without correcting.
        let (listener, _) = runtime.load(model, None)?;
        let listen = params.with(STRENGTH, 0.0).with(MODE, Mode::Auto.value());
        let mono = [corrected[0].to_vec()];
        let (_, heard) = run(&mut processor(listener, &[listen], &Arc::new(Meters::default())), &mono, &bar);
        let sung: Vec<f32> = reports.iter().map(|(r, _)| r.detected_hz).collect();
        // The target where the voice was corrected: it carries humanize's and the vibratos'
        // movement, and has gaps where flex-tune let a note pass (less than half the strength).
        let corrected_from = 0.5 * params.get(STRENGTH);
        let target: Vec<f32> = reports
            .iter()
            .map(|(r, fed)| if r.detected_hz > 0.0 && *fed >= corrected_from { r.target_hz } else { 0.0 })
            .collect();
        let result: Vec<f32> = heard.iter().map(|(r, _)| r.detected_hz).collect();
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
        channels: spec.channels,
        sample_rate: spec.sample_rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer =
        hound::WavWriter::create(output, out_spec).with_context(|| format!("writing {}", output.display()))?;
    for frame in 0..frames {
        for channel in &corrected {
            writer.write_sample(channel[frame])?;
        }
    }
    writer.finalize()?;
    Ok(meters.faults())
}
