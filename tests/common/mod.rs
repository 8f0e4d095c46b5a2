//! Helpers shared by the integration tests: a private jackd, the daemon binary, a JACK test
//! client that plays and records, an OSC client, ONNX Runtime, and an independent pitch meter.
// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use autotuned::model::Runtime;
use rosc::{OscMessage, OscPacket, OscType};

pub const RATE: u32 = 44_100;

/// One ONNX Runtime per test process (ONNX Runtime allows one environment per process).
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| autotuned::model::start_runtime(None).expect("ONNX Runtime (run `make ort`)"))
}

/// The default model's delay in samples, as the model itself declares it.
pub fn model_latency() -> usize {
    static LATENCY: OnceLock<usize> = OnceLock::new();
    *LATENCY.get_or_init(|| runtime().load(&root().join("models/autotune.onnx"), None).unwrap().1.latency_samples)
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// A name no other test, test binary or run on this machine uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos % 100_000)
}

/// Tests that talk to JACK run one at a time within a test binary: test clients open on the
/// server the holder of this lock started last ([`current_server`]).
pub fn jack_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The private server [`TestClient`]s open on: the one [`JackServer::start`] started last.
pub fn current_server() -> MutexGuard<'static, String> {
    static SERVER: Mutex<String> = Mutex::new(String::new());
    SERVER.lock().unwrap_or_else(|e| e.into_inner())
}

/// A private jackd with the dummy backend, killed on drop.
pub struct JackServer {
    pub name: String,
    child: Child,
}

impl JackServer {
    pub fn start(rate: u32, period: u32) -> JackServer {
        JackServer::start_named(&unique("at-srv"), rate, period)
    }

    /// Starts a server with this name (to start the same server again after it died).
    pub fn start_named(name: &str, rate: u32, period: u32) -> JackServer {
        JackServer::spawn(name, &["--no-realtime"], rate, period)
    }

    /// A server whose threads, and its clients' process threads, run SCHED_FIFO, as in a
    /// studio (needs the privilege to, e.g. root or the audio group's rtprio limit).
    pub fn start_realtime(rate: u32, period: u32) -> JackServer {
        JackServer::spawn(&unique("at-rt"), &["-R", "-P", "70"], rate, period)
    }

    fn spawn(name: &str, mode: &[&str], rate: u32, period: u32) -> JackServer {
        JackServer::spawn_driver(name, mode, &["dummy", "-r", &rate.to_string(), "-p", &period.to_string()])
    }

    /// A netjack2 master: a dummy-backend server with JACK's `netmanager` loaded, announcing
    /// itself on 127.0.0.1 at `port` (unique, so no other master on the machine answers).
    pub fn start_net_master(rate: u32, period: u32, port: u16) -> JackServer {
        let server = JackServer::start(rate, period);
        let status = Command::new("jack_load")
            .args(["netmanager", "-i", &format!("-a 127.0.0.1 -p {port}")])
            .env("JACK_DEFAULT_SERVER", &server.name)
            .env("JACK_NO_START_SERVER", "1")
            .stdout(Stdio::null())
            .status()
            .expect("jack_load (apt install jackd2)");
        assert!(status.success(), "jack_load netmanager failed on {}", server.name);
        server
    }

    /// A netjack2 slave that joins the master at `port` as `net_name`, one audio channel each
    /// way: its `system:capture_1` is the master's `<net_name>:to_slave_1`, its
    /// `system:playback_1` the master's `<net_name>:from_slave_1`. It takes the master's rate
    /// and period.
    pub fn start_net_slave(net_name: &str, port: u16) -> JackServer {
        let port = port.to_string();
        let driver = ["net", "-a", "127.0.0.1", "-p", &port, "-n", net_name, "-C", "1", "-P", "1"];
        JackServer::spawn_driver(&unique("at-slave"), &["--no-realtime"], &driver)
    }

    fn spawn_driver(name: &str, mode: &[&str], driver: &[&str]) -> JackServer {
        let name = name.to_owned();
        let child = Command::new("jackd")
            .args(["-n", &name])
            .args(mode)
            .arg("-d")
            .args(driver)
            .env("JACK_DEFAULT_SERVER", &name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("jackd (apt install jackd2)");
        let server = JackServer { name, child };
        wait_for(Duration::from_secs(10), "jackd to start", || server.ports().is_some());
        *current_server() = server.name.clone();
        server
    }

    /// Kills the server outright (SIGKILL), as a crash would.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.name.clone()
    }

    /// `jack_lsp -c`: every port, each followed by its connections indented.
    pub fn connections(&self) -> String {
        let out = Command::new("jack_lsp")
            .arg("-c")
            .env("JACK_DEFAULT_SERVER", &self.name)
            .env("JACK_NO_START_SERVER", "1")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server's ports, or None while it is not answering.
    pub fn ports(&self) -> Option<Vec<String>> {
        let out = Command::new("jack_lsp")
            .env("JACK_DEFAULT_SERVER", &self.name)
            .env("JACK_NO_START_SERVER", "1")
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect())
    }
}

/// Asks a child to stop with SIGTERM and waits; SIGKILL only if it does not stop within 10 s.
/// jackd must stop this way: a killed jackd stays in JACK's server registry, which holds only
/// a handful of servers, and later servers then fail to start.
pub fn terminate(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for JackServer {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

pub fn wait_for(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The daemon binary under test, killed on drop if still running. Its log (stderr) goes to a
/// file the test can read.
pub struct Daemon {
    pub child: Child,
    pub client: String,
    pub osc: SocketAddr,
    log: PathBuf,
}

impl Daemon {
    /// Starts `autotuned` on `server` with a unique client name and OSC port, plus `extra`
    /// `--set` overrides and environment.
    pub fn start(server: &JackServer, config: Option<&Path>, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_in(&root(), &server.name, config, extra, env)
    }

    /// [`Daemon::start`] from working directory `dir`, on the server named `server` (which
    /// need not be running).
    pub fn start_in(dir: &Path, server: &str, config: Option<&Path>, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let client = unique("autotuned");
        let port = free_udp_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_autotuned"));
        cmd.current_dir(dir);
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        cmd.args(["--set", &format!("jack.server_name={server}")])
            .args(["--set", &format!("jack.client_name={client}")])
            .args(["--set", &format!("osc.bind=127.0.0.1:{port}")]);
        for e in extra {
            cmd.args(["--set", e]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = std::env::temp_dir().join(format!("{client}.log"));
        let stderr = std::fs::File::create(&log).unwrap();
        let child =
            cmd.env("RUST_LOG", "info").stdout(Stdio::null()).stderr(stderr).spawn().expect("the autotuned binary");
        let daemon = Daemon { child, client, osc: SocketAddr::from(([127, 0, 0, 1], port)), log };
        let osc = OscClient::new();
        wait_for(Duration::from_secs(30), "the daemon to answer OSC", || {
            osc.request(daemon.osc, "/autotune/ping", vec![]).is_some()
        });
        daemon
    }

    /// Everything the daemon has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `text`.
    pub fn wait_for_log(&self, text: &str) {
        wait_for(Duration::from_secs(30), &format!("the log line {text:?}"), || self.log().contains(text));
    }

    pub fn signal(&self, signal: i32) {
        let status = Command::new("kill").args([format!("-{signal}"), self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(start.elapsed() < limit, "the daemon did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn status(&self) -> Vec<OscType> {
        match OscClient::new().request(self.osc, "/autotune/status", vec![]) {
            Some(m) if m.addr == "/autotune/status.reply" => m.args,
            other => panic!("no status reply: {other:?}"),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        terminate(&mut self.child);
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.client, self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A real UDP OSC client (rosc encoder/decoder).
pub struct OscClient {
    pub socket: UdpSocket,
}

impl OscClient {
    pub fn new() -> OscClient {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        OscClient { socket }
    }

    pub fn send(&self, to: SocketAddr, addr: &str, args: Vec<OscType>) {
        let bytes = rosc::encoder::encode(&OscPacket::Message(OscMessage { addr: addr.into(), args })).unwrap();
        self.socket.send_to(&bytes, to).unwrap();
    }

    pub fn send_raw(&self, to: SocketAddr, bytes: &[u8]) {
        self.socket.send_to(bytes, to).unwrap();
    }

    /// The next message received, if any within the timeout.
    pub fn receive(&self) -> Option<OscMessage> {
        let mut buf = [0u8; 65_536];
        let (len, _) = self.socket.recv_from(&mut buf).ok()?;
        match rosc::decoder::decode_udp(&buf[..len]).ok()?.1 {
            OscPacket::Message(m) => Some(m),
            OscPacket::Bundle(_) => None,
        }
    }

    /// The next packet received (message or bundle), if any within the timeout.
    pub fn receive_packet(&self) -> Option<OscPacket> {
        let mut buf = [0u8; 65_536];
        let (len, _) = self.socket.recv_from(&mut buf).ok()?;
        Some(rosc::decoder::decode_udp(&buf[..len]).ok()?.1)
    }

    pub fn request(&self, to: SocketAddr, addr: &str, args: Vec<OscType>) -> Option<OscMessage> {
        self.send(to, addr, args);
        self.receive()
    }
}

/// A JACK client that plays a signal per channel into the daemon and records its output per
/// channel; it also sends scheduled MIDI to the daemon's `midi_in` and records what comes out of
/// its `midi_out`. Channel 0 is the only one unless made with [`TestClient::voices`].
pub struct TestClient {
    client: jack::AsyncClient<(), Recorder>,
    pub rate: u32,
    recorded: Vec<rtrb::Consumer<f32>>,
    midi_recorded: rtrb::Consumer<(u64, [u8; 3])>,
}

pub struct Recorder {
    outs: Vec<jack::Port<jack::AudioOut>>,
    inps: Vec<jack::Port<jack::AudioIn>>,
    midi_out: jack::Port<jack::MidiOut>,
    midi_in: jack::Port<jack::MidiIn>,
    signals: Vec<Vec<f32>>,
    looping: bool,
    position: usize,
    /// (frame from the start, message), in frame order.
    schedule: Vec<(u64, [u8; 3])>,
    next_event: usize,
    frames: u64,
    recorded: Vec<rtrb::Producer<f32>>,
    midi_recorded: rtrb::Producer<(u64, [u8; 3])>,
}

impl jack::ProcessHandler for Recorder {
    fn process(&mut self, _: &jack::Client, ps: &jack::ProcessScope) -> jack::Control {
        let n = ps.n_frames() as usize;
        for (out, signal) in self.outs.iter_mut().zip(&self.signals) {
            for (i, y) in out.as_mut_slice(ps).iter_mut().enumerate() {
                let position = self.position + i;
                let position = if self.looping { position % signal.len().max(1) } else { position };
                *y = signal.get(position).copied().unwrap_or(0.0);
            }
        }
        self.position += n;
        for (inp, recorded) in self.inps.iter().zip(self.recorded.iter_mut()) {
            for x in inp.as_slice(ps) {
                let _ = recorded.push(*x);
            }
        }
        let n = n as u64;
        let mut writer = self.midi_out.writer(ps);
        while let Some((frame, bytes)) = self.schedule.get(self.next_event).copied() {
            if frame >= self.frames + n {
                break;
            }
            let time = frame.saturating_sub(self.frames) as u32;
            let _ = writer.write(&jack::RawMidi { time, bytes: &bytes });
            self.next_event += 1;
        }
        for event in self.midi_in.iter(ps) {
            if let [a, b, c] = event.bytes {
                let _ = self.midi_recorded.push((self.frames + u64::from(event.time), [*a, *b, *c]));
            }
        }
        self.frames += n;
        jack::Control::Continue
    }
}

impl TestClient {
    /// Connects to the daemon `target` ("<client>") on the current server and plays `signal` in a
    /// loop from the start.
    pub fn start(target: &str, signal: Vec<f32>, max_seconds: usize) -> TestClient {
        TestClient::with_midi(target, signal, true, Vec::new(), max_seconds)
    }

    /// As `start`, playing `signal` once (then silence) or looping, and sending `schedule`.
    pub fn with_midi(
        target: &str,
        signal: Vec<f32>,
        looping: bool,
        schedule: Vec<(u64, [u8; 3])>,
        max_seconds: usize,
    ) -> TestClient {
        let (client, ports) = TestClient::activate(vec![signal], looping, schedule, max_seconds);
        let c = client.client.as_client();
        c.connect_ports_by_name(&ports.play[0], &format!("{target}:in")).unwrap();
        c.connect_ports_by_name(&format!("{target}:out"), &ports.rec[0]).unwrap();
        c.connect_ports_by_name(&ports.midi_play, &format!("{target}:midi_in")).unwrap();
        c.connect_ports_by_name(&format!("{target}:midi_out"), &ports.midi_rec).unwrap();
        client
    }

    /// Plays `signal` in a loop into the port `play_into` and records the port `record_from`
    /// (any ports, e.g. a netjack2 master's `to_slave_1` / `from_slave_1`).
    pub fn between(play_into: &str, record_from: &str, signal: Vec<f32>, max_seconds: usize) -> TestClient {
        let (client, ports) = TestClient::activate(vec![signal], true, Vec::new(), max_seconds);
        let c = client.client.as_client();
        c.connect_ports_by_name(&ports.play[0], play_into).unwrap();
        c.connect_ports_by_name(record_from, &ports.rec[0]).unwrap();
        client
    }

    /// Plays `signals[K-1]` in a loop into the daemon's `in_K` and records its `out_K` as
    /// channel K-1, for a daemon with that many voices; `schedule` goes to its `midi_in`.
    pub fn voices(
        target: &str,
        signals: Vec<Vec<f32>>,
        schedule: Vec<(u64, [u8; 3])>,
        max_seconds: usize,
    ) -> TestClient {
        let (client, ports) = TestClient::activate(signals, true, schedule, max_seconds);
        let c = client.client.as_client();
        for (k, (play, rec)) in ports.play.iter().zip(&ports.rec).enumerate() {
            c.connect_ports_by_name(play, &format!("{target}:in_{}", k + 1)).unwrap();
            c.connect_ports_by_name(&format!("{target}:out_{}", k + 1), rec).unwrap();
        }
        c.connect_ports_by_name(&ports.midi_play, &format!("{target}:midi_in")).unwrap();
        c.connect_ports_by_name(&format!("{target}:midi_out"), &ports.midi_rec).unwrap();
        client
    }

    /// An active client on the current server with one play and one record port per signal,
    /// connected to nothing.
    fn activate(
        signals: Vec<Vec<f32>>,
        looping: bool,
        schedule: Vec<(u64, [u8; 3])>,
        max_seconds: usize,
    ) -> (TestClient, TestPorts) {
        let name = unique("at-test");
        let server = current_server().clone();
        let client = autotuned::audio::jack::open_client(&name, &server).expect("test JACK client");
        let channels = signals.len();
        let outs: Vec<_> = (0..channels)
            .map(|k| client.register_port(&format!("play_{k}"), jack::AudioOut::default()).unwrap())
            .collect();
        let inps: Vec<_> = (0..channels)
            .map(|k| client.register_port(&format!("rec_{k}"), jack::AudioIn::default()).unwrap())
            .collect();
        let midi_out = client.register_port("midi_play", jack::MidiOut::default()).unwrap();
        let midi_in = client.register_port("midi_rec", jack::MidiIn::default()).unwrap();
        let rate = client.sample_rate();
        let (producers, recorded): (Vec<_>, Vec<_>) =
            (0..channels).map(|_| rtrb::RingBuffer::new(rate as usize * max_seconds)).unzip();
        let (midi_producer, midi_recorded) = rtrb::RingBuffer::new(1024);
        let ports = TestPorts {
            play: outs.iter().map(|p| p.name().unwrap()).collect(),
            rec: inps.iter().map(|p| p.name().unwrap()).collect(),
            midi_play: midi_out.name().unwrap(),
            midi_rec: midi_in.name().unwrap(),
        };
        let recorder = Recorder {
            outs,
            inps,
            midi_out,
            midi_in,
            signals,
            looping,
            position: 0,
            schedule,
            next_event: 0,
            frames: 0,
            recorded: producers,
            midi_recorded: midi_producer,
        };
        let active = client.activate_async((), recorder).unwrap();
        (TestClient { client: active, rate, recorded, midi_recorded }, ports)
    }

    /// Waits until `seconds` of audio more have been recorded, and returns everything so far.
    pub fn record(&mut self, seconds: f32, into: &mut Vec<f32>) {
        let want = into.len() + (seconds * self.rate as f32) as usize;
        let recorded = &mut self.recorded[0];
        wait_for(Duration::from_secs_f32(seconds * 4.0 + 10.0), "recorded audio", || {
            while let Ok(x) = recorded.pop() {
                into.push(x);
            }
            into.len() >= want
        });
    }

    /// Records `seconds` of every channel.
    pub fn record_all(&mut self, seconds: f32) -> Vec<Vec<f32>> {
        let want = (seconds * self.rate as f32) as usize;
        let mut channels = vec![Vec::new(); self.recorded.len()];
        wait_for(Duration::from_secs_f32(seconds * 4.0 + 10.0), "recorded audio", || {
            for (into, recorded) in channels.iter_mut().zip(self.recorded.iter_mut()) {
                while let Ok(x) = recorded.pop() {
                    into.push(x);
                }
            }
            channels.iter().all(|c| c.len() >= want)
        });
        // The recorder pushes one channel's period after the other's, so a channel read between
        // the two pushes is a period ahead; cut every channel to the same frames.
        let common = channels.iter().map(Vec::len).min().unwrap_or(0);
        for channel in &mut channels {
            channel.truncate(common);
        }
        channels
    }

    /// The capture latency range JACK reports for a port (as `jack_port_get_latency_range`).
    pub fn capture_latency(&self, port: &str) -> (u32, u32) {
        let port = self.client.as_client().port_by_name(port).expect("port");
        port.get_latency_range(jack::LatencyType::Capture)
    }

    /// MIDI received from the daemon so far: (frame, message).
    pub fn midi_received(&mut self) -> Vec<(u64, [u8; 3])> {
        std::iter::from_fn(|| self.midi_recorded.pop().ok()).collect()
    }

    pub fn close(self) {
        let _ = self.client.deactivate();
    }
}

/// Full names of a [`TestClient`]'s ports.
struct TestPorts {
    play: Vec<String>,
    rec: Vec<String>,
    midi_play: String,
    midi_rec: String,
}

/// A signal that does not repeat within 10 007 samples, so only the true alignment matches.
pub fn noise_like(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7919 % 10007) as f32 / 10007.0 - 0.5) * 0.5).collect()
}

/// The delay of a bypassed node: where the recording repeats the played signal exactly over
/// 2048 samples. An xrun on a loaded machine drops a cycle and breaks the copy there, so a few
/// windows are tried; the bypass path itself never alters a sample.
pub fn bypass_delay(played: &[f32], recorded: &[f32]) -> usize {
    let first = recorded.iter().position(|x| *x != 0.0).expect("silent output");
    for start in (first..recorded.len().saturating_sub(2048)).step_by(4096).take(8) {
        let window = &recorded[start..start + 2048];
        let Some(offset) = played.windows(16).position(|w| w == &window[..16]) else { continue };
        if offset + window.len() <= played.len() && played[offset..offset + window.len()] == *window {
            return start - offset;
        }
    }
    panic!("no stretch of the bypassed output is an exact copy of the input");
}

/// One second of a sine at `freq` rounded to whole Hz, so it loops without a seam (a looping
/// test client would otherwise put a phase jump, a glitch the model hears, every second).
/// Returns the tone and the frequency it really has.
pub fn looping_tone(freq: f32, amplitude: f32) -> (Vec<f32>, f32) {
    let whole = freq.round();
    (sine(whole, 1.0, amplitude), whole)
}

/// A looping tone 40 cents above A3, and the frequency it really has.
pub fn sharp_a3() -> (Vec<f32>, f32) {
    looping_tone(220.0 * 2f32.powf(40.0 / 1200.0), 0.3)
}

/// Asserts that the last second of `recorded` is finite and within 5 cents of A3 (220 Hz), the
/// input having been `sung` Hz; `path` says which way the audio went, for the message.
pub fn assert_lands_on_a3(recorded: &[f32], sung: f32, path: &str) {
    let tail = &recorded[recorded.len() - RATE as usize..];
    assert!(tail.iter().all(|x| x.is_finite()));
    let measured = median_hz(tail);
    let error = cents(measured, 220.0);
    assert!(
        error.abs() <= 5.0,
        "{path}: output at {measured:.2} Hz, {error:.2} cents from A3 (input {:.1} cents)",
        cents(sung, 220.0)
    );
}

pub fn sine(freq: f32, seconds: f32, amplitude: f32) -> Vec<f32> {
    sine_at(freq, seconds, amplitude, RATE)
}

pub fn sine_at(freq: f32, seconds: f32, amplitude: f32, rate: u32) -> Vec<f32> {
    (0..(seconds * rate as f32) as usize)
        .map(|i| amplitude * (std::f64::consts::TAU * f64::from(freq) * i as f64 / f64::from(rate)).sin() as f32)
        .collect()
}

/// Frequency of a near-sinusoid by counting rising zero crossings with linear interpolation:
/// an estimator unrelated to the model's YIN.
pub fn zero_crossing_hz(signal: &[f32]) -> f32 {
    zero_crossing_hz_at(signal, RATE)
}

/// Where `signal` rises through zero, in fractional samples (linear interpolation).
fn rising_zero_crossings(signal: &[f32]) -> Vec<f64> {
    signal
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, w)| i as f64 + f64::from(w[0] / (w[0] - w[1])))
        .collect()
}

pub fn zero_crossing_hz_at(signal: &[f32], rate: u32) -> f32 {
    let crossings = rising_zero_crossings(signal);
    assert!(crossings.len() > 10, "no periodic signal to measure");
    let span = crossings[crossings.len() - 1] - crossings[0];
    ((crossings.len() - 1) as f64 / span * f64::from(rate)) as f32
}

pub fn cents(freq: f32, reference: f32) -> f32 {
    1200.0 * (freq / reference).log2()
}

/// Frequency along `signal` from the intervals between rising zero crossings: (sample, Hz).
pub fn pitch_track(signal: &[f32]) -> Vec<(usize, f32)> {
    pitch_track_at(signal, RATE)
}

pub fn pitch_track_at(signal: &[f32], rate: u32) -> Vec<(usize, f32)> {
    let crossings = rising_zero_crossings(signal);
    crossings.windows(2).map(|w| (((w[0] + w[1]) / 2.0) as usize, (f64::from(rate) / (w[1] - w[0])) as f32)).collect()
}

/// The median of `pitch_track`: a pitch estimate that one glitch (an xrun's dropout) cannot
/// pull off.
pub fn median_hz(signal: &[f32]) -> f32 {
    median_hz_at(signal, RATE)
}

pub fn median_hz_at(signal: &[f32], rate: u32) -> f32 {
    let mut hz: Vec<f32> = pitch_track_at(signal, rate).into_iter().map(|(_, f)| f).collect();
    assert!(hz.len() > 10, "no periodic signal to measure");
    hz.sort_by(f32::total_cmp);
    hz[hz.len() / 2]
}

/// `depth` bundles, each holding the next, the innermost holding a ping.
pub fn nested_bundles(depth: usize) -> Vec<u8> {
    let ping = OscPacket::Message(OscMessage { addr: "/autotune/ping".into(), args: vec![] });
    let mut packet = rosc::encoder::encode(&ping).unwrap();
    for _ in 0..depth {
        let mut bundle = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
        bundle.extend_from_slice(&(packet.len() as u32).to_be_bytes());
        bundle.extend_from_slice(&packet);
        packet = bundle;
    }
    packet
}

/// A seeded xorshift64 generator: the same garbage on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
