//! End to end: the real `autotuned` binary under a private jackd (dummy backend), with a JACK
//! test client playing into it and recording it, OSC over real UDP, and real signals.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::*;
use rosc::OscType;

const SIGHUP: i32 = 1;
const SIGTERM: i32 = 15;

#[test]
fn corrects_a_detuned_tone_to_the_target_note() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let daemon = Daemon::start(&server, Some(&root().join("config/autotuned.toml")), &[], &[]);
    let osc = OscClient::new();
    osc.send(daemon.osc, "/autotune/target/note", vec![OscType::Int(57)]);
    assert_eq!(osc.request(daemon.osc, "/autotune/mode", vec![]).unwrap().args, vec![OscType::String("manual".into())]);

    let (tone, sung) = sharp_a3();
    let mut client = TestClient::start(&daemon.client, tone, 8);
    let mut recorded = Vec::new();
    client.record(3.0, &mut recorded);
    client.close();

    assert_lands_on_a3(&recorded, sung, "through jackd");
}

/// With the privilege (root, or an unlimited RLIMIT_MEMLOCK, which the daemon inherits from this
/// test) every mapping is locked: VmLck counts whole mappings, so it exceeds what is resident.
/// Without it the daemon runs unlocked (JACK may still lock its own segment, which is less).
#[test]
fn memory_is_locked_when_the_limit_allows() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let daemon = Daemon::start(&server, None, &[], &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    let kib = |key: &str| -> u64 {
        let line = status.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("{key} in status"));
        line.trim().trim_end_matches("kB").trim().parse().unwrap()
    };
    let (locked, resident) = (kib("VmLck:"), kib("VmRSS:"));
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit through a valid pointer; geteuid cannot fail.
    let may_lock = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) == 0 }
        && (limit.rlim_cur == libc::RLIM_INFINITY || unsafe { libc::geteuid() } == 0);
    assert_eq!(locked > resident, may_lock, "VmLck {locked} kB, VmRSS {resident} kB, may lock: {may_lock}");
}

#[test]
fn bypass_is_bit_identical_after_the_known_delay() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let daemon = Daemon::start(&server, None, &["tuning.bypass=true"], &[]);
    let played = noise_like(RATE as usize * 4);
    let mut client = TestClient::start(&daemon.client, played.clone(), 8);
    let mut recorded = Vec::new();
    client.record(2.0, &mut recorded);
    client.close();

    // Recording and playing share the same cycles: the lag is the model latency plus whole
    // JACK periods (the graph's feedback loop through the test client).
    let lag = bypass_delay(&played, &recorded);
    assert_eq!((lag - model_latency()) % 512, 0, "lag {lag} is not {} + whole periods", model_latency());
}

#[test]
fn sighup_swaps_the_model_without_a_gap_and_a_corrupt_one_is_refused() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let dir = std::env::temp_dir().join(common::unique("at-models"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root().join("models/autotune.onnx"), dir.join("autotune.onnx")).unwrap();
    std::fs::copy(fixture("gain.onnx"), dir.join("gain.onnx")).unwrap();
    std::fs::copy(fixture("corrupt.onnx"), dir.join("corrupt.onnx")).unwrap();
    let config = dir.join("autotuned.toml");
    let write_config = |file: &str| {
        std::fs::write(&config, format!("[model]\ndir = {:?}\nfile = {file:?}\n", dir.display().to_string())).unwrap()
    };
    write_config("autotune.onnx");
    let daemon = Daemon::start(&server, Some(&config), &[], &[]);
    assert!(model_name(&daemon).starts_with("autotune-learned-grains"));

    let mut client = TestClient::start(&daemon.client, sine(200.0, 1.0, 0.3), 12);
    let mut recorded = Vec::new();
    client.record(1.0, &mut recorded);
    write_config("gain.onnx");
    daemon.signal(SIGHUP);
    wait_for(Duration::from_secs(10), "the gain model", || model_name(&daemon).starts_with("gain-half"));
    client.record(1.0, &mut recorded);

    write_config("corrupt.onnx");
    daemon.signal(SIGHUP);
    client.record(1.0, &mut recorded);
    daemon.wait_for_log(&format!("{}: ONNX Runtime cannot load it", dir.join("corrupt.onnx").display()));
    assert!(model_name(&daemon).starts_with("gain-half"), "a corrupt model replaced the running one");
    client.close();

    assert!(recorded.iter().all(|x| x.is_finite()), "NaN or inf reached the graph");
    let start = recorded.iter().position(|x| x.abs() > 0.01).unwrap();
    let longest_silence = longest_run(&recorded[start..], |x| x.abs() < 1e-4);
    assert!(longest_silence <= 512, "a silence of {longest_silence} samples after the audio started");
    // After the swap the output is the input at half gain: peak 0.15.
    let tail = &recorded[recorded.len() - 10_000..];
    let peak = tail.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!((peak - 0.15).abs() < 0.01, "peak {peak} after swapping to the half-gain model");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ready_reaches_notify_socket_and_sigterm_exits_zero() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let socket_path = std::env::temp_dir().join(format!("{}.sock", common::unique("at-notify")));
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let env = [("NOTIFY_SOCKET", socket_path.to_str().unwrap()), ("WATCHDOG_USEC", "200000")];
    let mut daemon = Daemon::start(&server, None, &[], &env);
    let mut buf = [0u8; 4096];
    let mut messages = String::new();
    while !messages.contains("READY=1") || !messages.contains("WATCHDOG=1") {
        let len = socket.recv(&mut buf).expect("no sd_notify message");
        messages.push_str(&String::from_utf8_lossy(&buf[..len]));
        messages.push('\n');
    }
    assert!(messages.contains("STATUS=running"), "{messages}");
    daemon.signal(SIGTERM);
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)), Some(0));
    std::fs::remove_file(&socket_path).unwrap();
}

#[test]
fn deeply_nested_bundle_gets_an_error_and_the_daemon_lives() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let daemon = Daemon::start(&server, None, &[], &[]);
    let osc = OscClient::new();
    osc.send_raw(daemon.osc, &nested_bundles(3000));
    let reply = osc.receive().expect("an error reply");
    assert_eq!(reply.addr, "/autotune/error");
    assert_eq!(reply.args[1], OscType::Int(5));
    assert_eq!(osc.request(daemon.osc, "/autotune/ping", vec![]).unwrap().addr, "/autotune/pong");
}

#[test]
fn configured_connections_are_made_after_activation() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let env = [
        ("AUTOTUNED_JACK__CONNECT_INPUTS", "system:capture_1"),
        ("AUTOTUNED_JACK__CONNECT_OUTPUTS", "system:playback_1,system:playback_2"),
    ];
    let daemon = Daemon::start(&server, None, &[], &env);
    let listing = server.connections();
    let connected_to = |port: &str| -> Vec<String> {
        let lines: Vec<&str> = listing.lines().collect();
        let at = lines.iter().position(|l| *l == port).unwrap_or_else(|| panic!("{port} missing:\n{listing}"));
        lines[at + 1..].iter().take_while(|l| l.starts_with(' ')).map(|l| l.trim().to_owned()).collect()
    };
    assert_eq!(connected_to(&format!("{}:in", daemon.client)), ["system:capture_1"]);
    assert_eq!(connected_to(&format!("{}:out", daemon.client)), ["system:playback_1", "system:playback_2"]);
}

fn model_name(daemon: &Daemon) -> String {
    match &daemon.status()[6] {
        OscType::String(s) => s.clone(),
        other => panic!("{other:?}"),
    }
}

fn longest_run(samples: &[f32], quiet: impl Fn(f32) -> bool) -> usize {
    let (mut longest, mut run) = (0, 0);
    for &x in samples {
        run = if quiet(x) { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

/// Formant resonators of /a/ (centre Hz, bandwidth Hz), as models/voices.py has them.
const VOWEL_A: [(f64, f64); 3] = [(730.0, 90.0), (1090.0, 110.0), (2440.0, 170.0)];

fn vowel_gain(freq: f64) -> f64 {
    VOWEL_A
        .iter()
        .map(|&(centre, width)| {
            centre * centre / ((centre * centre - freq * freq).powi(2) + (width * freq).powi(2)).sqrt()
        })
        .product()
}

/// One second of a sung /a/ at `f0` (a whole number of periods, so it loops seamlessly): harmonics
/// falling at 12 dB per octave through the vowel's resonators.
fn vowel(f0: f64) -> Vec<f32> {
    let harmonics: Vec<(f64, f64)> =
        (1..).map(f64::from).take_while(|k| k * f0 < 8000.0).map(|k| (k, vowel_gain(k * f0) / (k * k))).collect();
    let peak: f64 = harmonics.iter().map(|(_, a)| a).sum();
    (0..RATE as usize)
        .map(|i| {
            let t = i as f64 / f64::from(RATE);
            let sum: f64 = harmonics.iter().map(|&(k, a)| a * (std::f64::consts::TAU * k * f0 * t).sin()).sum();
            (0.3 * sum / peak) as f32
        })
        .collect()
}

/// Level (dB) of the harmonics of `f0` in `signal` from 250 to 3000 Hz: (frequency, dB) pairs.
fn harmonic_levels(signal: &[f32], f0: f64) -> Vec<(f64, f64)> {
    let window: Vec<f64> =
        (0..signal.len()).map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / signal.len() as f64).cos()).collect();
    (1..)
        .map(|k| f64::from(k) * f0)
        .skip_while(|&f| f < 250.0)
        .take_while(|&f| f <= 3000.0)
        .map(|f| {
            let step = std::f64::consts::TAU * f / f64::from(RATE);
            let (re, im) = signal.iter().zip(&window).enumerate().fold((0.0, 0.0), |(re, im), (i, (&x, w))| {
                let phase = step * i as f64;
                (re + f64::from(x) * w * phase.cos(), im - f64::from(x) * w * phase.sin())
            });
            (f, 10.0 * (re * re + im * im).max(1e-30).log10())
        })
        .collect()
}

/// The frequency (Hz) of `signal`'s autocorrelation peak between `low` and `high` Hz, refined by a
/// parabola: a vowel's strong formant harmonics fool a general pitch tracker, a window around the
/// expected note does not hide a miss of more than a few cents.
fn period_near(signal: &[f32], low: f64, high: f64) -> f64 {
    let rate = f64::from(RATE);
    let correlation =
        |lag: usize| -> f64 { signal.iter().zip(&signal[lag..]).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum() };
    let lags: Vec<usize> = ((rate / high) as usize..=(rate / low) as usize + 1).collect();
    let scores: Vec<f64> = lags.iter().map(|&lag| correlation(lag)).collect();
    let best = (1..scores.len() - 1).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap();
    let (a, b, c) = (scores[best - 1], scores[best], scores[best + 1]);
    let shift = 0.5 * (a - c) / (a - 2.0 * b + c);
    rate / (lags[best] as f64 + shift)
}

/// The frequency factor that best maps the input's envelope onto the output's: out(f) ~ in(f / a),
/// levels matched, the input's envelope interpolated between its harmonics.
fn envelope_warp(input: &[(f64, f64)], output: &[(f64, f64)]) -> f64 {
    let at = |f: f64| -> Option<f64> {
        let i = input.windows(2).position(|w| w[0].0 <= f && f <= w[1].0)?;
        let ((f0, d0), (f1, d1)) = (input[i], input[i + 1]);
        Some(d0 + (d1 - d0) * (f - f0) / (f1 - f0))
    };
    let score = |a: f64| -> f64 {
        let pairs: Vec<(f64, f64)> = output.iter().filter_map(|&(f, d)| at(f / a).map(|e| (d, e))).collect();
        if pairs.len() < 5 {
            return f64::INFINITY;
        }
        let offset = pairs.iter().map(|(d, e)| d - e).sum::<f64>() / pairs.len() as f64;
        pairs.iter().map(|(d, e)| (d - e - offset).powi(2)).sum::<f64>() / pairs.len() as f64
    };
    (0..=600)
        .map(|i| 0.7 * (1.6f64 / 0.7).powf(f64::from(i) / 600.0))
        .min_by(|&a, &b| score(a).total_cmp(&score(b)))
        .unwrap()
}

/// Through jackd, a vowel transposed up a fourth keeps its formants where they were sung, and with
/// formant preservation off they move with the pitch.
#[test]
fn a_transpose_keeps_the_formants_unless_told_not_to() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let daemon = Daemon::start(&server, Some(&root().join("config/autotuned.toml")), &[], &[]);
    let osc = OscClient::new();
    // 150 Hz is 37 cents above D3: auto mode lands on D3, the transpose on G3.
    let f_in = 150.0;
    let input = vowel(f_in);
    let sung = harmonic_levels(&input, f_in);
    osc.send(daemon.osc, "/autotune/transpose", vec![OscType::Float(5.0)]);
    let mut client = TestClient::start(&daemon.client, input, 12);
    let mut warps = Vec::new();
    for preserve in [1.0f32, 0.0] {
        osc.send(daemon.osc, "/autotune/formant/preserve", vec![OscType::Float(preserve)]);
        let mut recorded = Vec::new();
        client.record(2.0, &mut recorded);
        let tail = &recorded[recorded.len() - RATE as usize..];
        let f_out = period_near(tail, 180.0, 215.0);
        assert!(
            cents(f_out as f32, 196.0).abs() <= 5.0,
            "formant_preserve {preserve}: output at {f_out:.2} Hz, not G3"
        );
        let warp = envelope_warp(&sung, &harmonic_levels(tail, f_out));
        eprintln!("formant_preserve {preserve}: output {f_out:.2} Hz, envelope warp {warp:.3}");
        warps.push((f_out / f_in, warp));
    }
    client.close();
    let [(_, kept), (ratio, moved)] = warps[..] else { unreachable!() };
    assert!((kept - 1.0).abs() <= 0.05, "formants kept: warp {kept:.3}, want 1 ± 0.05");
    assert!(
        (moved / ratio - 1.0).abs() <= 0.06,
        "formants free: warp {moved:.3}, want the pitch ratio {ratio:.3} ± 6 %"
    );
}
