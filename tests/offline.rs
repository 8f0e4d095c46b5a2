//! `autotuned process`: the real binary over WAV files.

mod common;

use std::process::Command;

use common::*;

fn write_wav(path: &std::path::Path, samples: &[f32], rate: u32, channels: u16) {
    let spec =
        hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        for _ in 0..channels {
            w.write_sample((s * 32767.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

fn autotuned(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_autotuned")).current_dir(root()).args(args).output().unwrap()
}

#[test]
fn a_file_is_corrected_and_stays_aligned() {
    let dir = std::env::temp_dir().join(unique("at-offline"));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in.wav"), dir.join("out.wav"));
    let tone = sine(330.0 * 2f32.powf(30.0 / 1200.0), 2.0, 0.3);
    write_wav(&input, &tone, RATE, 1);
    let run = autotuned(&["process", input.to_str().unwrap(), output.to_str().unwrap(), "--note", "64"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let corrected: Vec<f32> = hound::WavReader::open(&output).unwrap().samples::<f32>().map(Result::unwrap).collect();
    assert_eq!(corrected.len(), tone.len());
    let error = cents(zero_crossing_hz(&corrected[RATE as usize / 2..]), 329.63);
    assert!(error.abs() < 3.0, "{error} cents from E4");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A WAV file of `channels`, one signal each, 16-bit.
fn write_channels(path: &std::path::Path, channels: &[Vec<f32>], rate: u32) {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for frame in 0..channels[0].len() {
        for channel in channels {
            w.write_sample((channel[frame] * 32767.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// Each channel of a 32-bit float WAV file.
fn read_channels(path: &std::path::Path) -> Vec<Vec<f32>> {
    let mut reader = hound::WavReader::open(path).unwrap();
    let channels = usize::from(reader.spec().channels);
    let samples: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
    (0..channels).map(|c| samples.iter().skip(c).step_by(channels).copied().collect()).collect()
}

#[test]
fn each_channel_is_a_voice_and_linked_channels_are_corrected_alike() {
    let dir = std::env::temp_dir().join(unique("at-offline-voices"));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in.wav"), dir.join("out.wav"));
    let a3 = sine(220.0 * 2f32.powf(30.0 / 1200.0), 2.0, 0.3);
    let e4 = sine(329.63 * 2f32.powf(-25.0 / 1200.0), 2.0, 0.3);
    write_channels(&input, &[a3.clone(), e4], RATE);
    let run = autotuned(&["process", input.to_str().unwrap(), output.to_str().unwrap(), "--formant-preserve", "0"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let corrected = read_channels(&output);
    assert_eq!(corrected.len(), 2);
    for (channel, target) in corrected.iter().zip([220.0, 329.63]) {
        assert_eq!(channel.len(), a3.len());
        let error = cents(median_hz(&channel[RATE as usize / 2..]), target);
        assert!(error.abs() < 3.0, "{error} cents from {target} Hz");
    }

    // The second channel is the first plus a -20 dB bleed: linked, both are corrected alike, so
    // they differ by the corrected bleed alone.
    let bleed: Vec<f32> = a3.iter().zip(sine(677.0, 2.0, 0.03)).map(|(a, b)| a + b).collect();
    write_channels(&input, &[a3, bleed], RATE);
    let difference_db = |link: bool| {
        let mut args = vec!["process", input.to_str().unwrap(), output.to_str().unwrap(), "--formant-preserve", "0"];
        if link {
            args.extend(["--link", "1,2"]);
        }
        let run = autotuned(&args);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let [first, second] = <[Vec<f32>; 2]>::try_from(read_channels(&output)).unwrap();
        let (first, second) = (&first[RATE as usize / 2..], &second[RATE as usize / 2..]);
        let energy = |x: &mut dyn Iterator<Item = f32>| x.map(|v| v * v).sum::<f32>();
        10.0 * (energy(&mut first.iter().zip(second).map(|(a, b)| a - b)) / energy(&mut first.iter().copied())).log10()
    };
    let (linked, apart) = (difference_db(true), difference_db(false));
    println!("outputs differ by {linked:.1} dB linked, {apart:.1} dB unlinked");
    assert!((linked + 20.0).abs() < 1.0, "linked, the outputs differ by {linked:.1} dB");
    assert!(apart > linked + 6.0, "unlinked {apart:.1} dB, linked {linked:.1} dB");

    let run = autotuned(&["process", input.to_str().unwrap(), output.to_str().unwrap(), "--link", "1,3"]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("has 2 channels"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_wrong_rate_or_a_model_without_a_voice_axis_is_refused_clearly() {
    let dir = std::env::temp_dir().join(unique("at-offline-bad"));
    std::fs::create_dir_all(&dir).unwrap();
    let stereo = dir.join("stereo.wav");
    write_wav(&stereo, &sine(220.0, 0.2, 0.3), RATE, 2);
    let fixture = fixture("identity.onnx");
    let run = autotuned(&[
        "process",
        stereo.to_str().unwrap(),
        dir.join("o.wav").to_str().unwrap(),
        "--model",
        fixture.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("no voice axis"), "{}", String::from_utf8_lossy(&run.stderr));
    let rate = dir.join("rate.wav");
    write_wav(&rate, &sine(220.0, 0.2, 0.3), 22_050, 1);
    let run = autotuned(&["process", rate.to_str().unwrap(), dir.join("o.wav").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("22050 Hz"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_model_prints_the_contract() {
    let run = autotuned(&["check-model", "models/autotune.onnx"]);
    assert!(run.status.success());
    let text = String::from_utf8_lossy(&run.stdout);
    let (_, contract) = runtime().load(&root().join("models/autotune.onnx"), None).unwrap();
    let latency = format!("latency {} samples", contract.latency_samples);
    assert!(
        text.contains("history") && text.contains(&latency) && text.contains("formant_preserve, formant_shift"),
        "{text}"
    );
    assert!(text.contains("detector     learned: an MLP") && text.contains("state pairs  3"), "{text}");
    let run = autotuned(&["check-model", "tests/fixtures/wrong_shape.onnx"]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("audio_buffer"));
}

#[test]
fn the_plot_draws_the_input_target_and_output_pitch() {
    let dir = std::env::temp_dir().join(unique("at-plot"));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output, png) = (dir.join("in.wav"), dir.join("out.wav"), dir.join("pitch.png"));
    write_wav(&input, &sine(220.0 * 2f32.powf(40.0 / 1200.0), 1.5, 0.3), RATE, 1);
    let args = ["process", input.to_str().unwrap(), output.to_str().unwrap(), "--plot", png.to_str().unwrap()];
    let run = autotuned(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let image = image::open(&png).expect("a PNG").to_rgb8();
    assert_eq!(image.dimensions(), (autotuned::plot::WIDTH, autotuned::plot::HEIGHT));
    let count = |c: plotters::style::RGBColor| image.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
    for (name, color) in
        [("input", autotuned::plot::INPUT), ("target", autotuned::plot::TARGET), ("output", autotuned::plot::OUTPUT)]
    {
        assert!(count(color) > 500, "the {name} line is missing ({} pixels)", count(color));
    }
    // The output line sits on the target (A3), 40 cents below the input: its mean row is
    // below the input's (rows grow downwards), by about 0.4 semitone of the note grid.
    let mean_row = |c: plotters::style::RGBColor| {
        let rows: Vec<u32> =
            image.enumerate_pixels().filter(|(_, _, p)| p.0 == [c.0, c.1, c.2]).map(|(_, y, _)| y).collect();
        rows.iter().sum::<u32>() as f32 / rows.len() as f32
    };
    assert!(mean_row(autotuned::plot::OUTPUT) > mean_row(autotuned::plot::INPUT) + 5.0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn formant_flags_reach_the_model_and_are_range_checked() {
    let dir = std::env::temp_dir().join(unique("at-formant"));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in.wav"), dir.join("out.wav"));
    let tone = sine(220.0, 1.0, 0.5);
    write_wav(&input, &tone, RATE, 1);
    let fixture = root().join("tests/fixtures/formant_gain.onnx");
    let (i, o, m) = (input.to_str().unwrap(), output.to_str().unwrap(), fixture.to_str().unwrap());
    let run = autotuned(&["process", i, o, "--model", m, "--formant-preserve", "0.25", "--formant-shift", "-3"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let corrected: Vec<f32> = hound::WavReader::open(&output).unwrap().samples::<f32>().map(Result::unwrap).collect();
    let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
    let ratio = rms(&corrected) / rms(&tone);
    assert!((ratio - 0.25).abs() < 1e-3, "output/input {ratio}, the model multiplies by formant_preserve");
    let run = autotuned(&["process", i, o, "--model", m, "--formant-shift", "13"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("--formant-shift"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}
