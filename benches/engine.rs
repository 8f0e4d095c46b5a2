//! Per-block cost of the RT path and per-message cost of OSC dispatch (criterion).
//! Needs ONNX Runtime (`make ort`); run with `cargo bench` or `make bench`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autotuned::BLOCK;
use autotuned::control::{Controls, Status};
use autotuned::model::Runtime;
use autotuned::osc::OscService;
use autotuned::rt::{
    BlockReport, Controls as ModelControls, Held, Meters, Params, Processor, ProcessorRings, SharedParams,
};
use criterion::{Criterion, criterion_group, criterion_main};
use rosc::{OscMessage, OscPacket, OscType};
use rtrb::RingBuffer;

fn voice(blocks: usize) -> Vec<f32> {
    (0..blocks * BLOCK)
        .map(|i| {
            let t = i as f32 / 44_100.0;
            (1..8).map(|k| 0.3 / k as f32 * (std::f32::consts::TAU * 196.0 * k as f32 * t).sin()).sum()
        })
        .collect()
}

/// Block `block` of the looping test voice.
fn block_of(signal: &[f32], block: usize) -> &[f32] {
    let start = (block % (signal.len() / BLOCK)) * BLOCK;
    &signal[start..start + BLOCK]
}

fn processor(runtime: &Runtime, model: &Path) -> Processor {
    let (inference, _) = runtime.load(model, None).expect("model");
    let (_commands, command_rx) = RingBuffer::new(1);
    let (retired_tx, _retired) = RingBuffer::new(1);
    let (events_tx, _events) = RingBuffer::new(16);
    Processor::new(
        Some(Box::new(inference)),
        ProcessorRings { commands: command_rx, retired: retired_tx, events: events_tx },
        vec![Arc::new(SharedParams::new(Params::default()))],
        Arc::new(Meters::default()),
    )
}

/// Median, p99 and max of one run per block, which criterion does not report.
fn report_percentiles(label: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    println!(
        "{label}: median {:.1} µs, p99 {:.1} µs, max {:.1} µs over {} blocks",
        at(0.5),
        at(0.99),
        at(1.0),
        times.len()
    );
}

/// Runs `run` once per block, `blocks` times, after `idle` and then `prepare` (both untimed) each
/// time; returns each run's time.
fn time_blocks(
    blocks: usize,
    idle: Duration,
    mut prepare: impl FnMut(usize),
    mut run: impl FnMut(usize),
) -> Vec<Duration> {
    (0..blocks)
        .map(|block| {
            if !idle.is_zero() {
                std::thread::sleep(idle);
            }
            prepare(block);
            let began = Instant::now();
            run(block);
            began.elapsed()
        })
        .collect()
}

fn engine(c: &mut Criterion) {
    let runtime = autotuned::model::start_runtime(None).expect("ONNX Runtime (make ort)");
    let default_model = Path::new("models/autotune.onnx");
    let signal = voice(256);
    let mut out = vec![0.0f32; BLOCK];

    let (mut inference, _) = runtime.load(default_model, None).unwrap();
    let controls = [ModelControls::default()];
    let mut reports = [Ok(BlockReport::default())];
    let mut twin_reports = [Ok(BlockReport::default())];
    // `cargo test --all-targets` runs this file once as a smoke test: no percentile runs then.
    if std::env::args().any(|arg| arg == "--bench") {
        let (mut twin, _) = runtime.load(default_model, None).unwrap();
        let mut twin_out = vec![0.0f32; BLOCK];
        let period = Duration::from_micros(11_000);
        let mut run = |block: usize| {
            black_box(inference.run(block_of(&signal, block), &controls, &mut out, &mut reports)).ok();
        };
        report_percentiles("ort_run/default_model", time_blocks(5000, Duration::ZERO, |_| {}, &mut run));
        report_percentiles("ort_run/default_model_once_per_period", time_blocks(500, period, |_| {}, &mut run));
        // A second session of the same model runs first: ONNX Runtime's code is then warm and only
        // this session's data is cold, which splits the penalty of the idle period in two.
        let mut warm_code = |block: usize| {
            black_box(twin.run(block_of(&signal, block), &controls, &mut twin_out, &mut twin_reports)).ok();
        };
        report_percentiles(
            "ort_run/default_model_once_per_period_code_warm",
            time_blocks(500, period, &mut warm_code, &mut run),
        );
    }
    let mut block = 0;
    c.bench_function("ort_run/default_model", |b| {
        b.iter(|| {
            block += 1;
            black_box(inference.run(block_of(&signal, block), &controls, &mut out, &mut reports)).ok();
        })
    });

    // As in the daemon: one run per JACK period, the CPU idle in between.
    let mut block = 0;
    c.bench_function("ort_run/default_model_once_per_period", |b| {
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                std::thread::sleep(Duration::from_micros(11_000));
                block += 1;
                let began = Instant::now();
                black_box(inference.run(block_of(&signal, block), &controls, &mut out, &mut reports)).ok();
                spent += began.elapsed();
            }
            spent
        })
    });

    for (name, model) in
        [("default_model", default_model), ("identity_model", Path::new("tests/fixtures/identity.onnx"))]
    {
        let mut p = processor(&runtime, model);
        let mut block = 0;
        c.bench_function(&format!("processor/{name}"), |b| {
            b.iter(|| {
                block += 1;
                p.process(black_box(block_of(&signal, block)), &mut out, &[Held::default()]);
            })
        });
    }

    let (tx, _rx) = std::sync::mpsc::channel();
    let (_answers, answer_rx) = std::sync::mpsc::channel();
    let settings = autotuned::settings::Settings::default();
    let mut service = OscService::new(
        &settings,
        Arc::new(Controls::new(vec![settings.params])),
        Arc::new(Status::default()),
        Arc::new(Meters::default()),
        tx,
        answer_rx,
    );
    let message = rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: "/autotune/strength".into(),
        args: vec![OscType::Float(0.7)],
    }))
    .unwrap();
    let from = SocketAddr::from(([127, 0, 0, 1], 9999));
    c.bench_function("osc/dispatch_set_strength", |b| b.iter(|| black_box(service.handle(black_box(&message), from))));
}

// No plots: criterion's plotting needs a system font, which a fresh machine does not have.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = engine
}
criterion_main!(benches);
