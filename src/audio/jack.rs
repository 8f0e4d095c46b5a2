//! The JACK node: client, ports, notifications, latency reporting and connections (supervisor
//! and JACK notification threads), and the process handler, which only hands the period's port
//! buffers to [`Engine`] (JACK thread).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};

use jack::{
    AudioIn, AudioOut, Client, ClientStatus, Control, Frames, MidiIn, MidiOut, Port, PortFlags, ProcessScope, RawMidi,
};

use crate::control::Status;
use crate::rt::reblock::MAX_PERIOD;
use crate::rt::{Engine, Meters, MidiChannels, Reblocker};
use crate::settings::JackSettings;

#[derive(Debug, thiserror::Error)]
pub enum JackError {
    #[error(
        "cannot open JACK client `{name}` on server `{server}`: {source} (is a JACK or PipeWire server running? `make run` starts a private one)"
    )]
    Open { name: String, server: String, source: jack::Error },
    #[error("cannot register port `{port}`: {source}")]
    Port { port: String, source: jack::Error },
    #[error("cannot register the latency callback (jack_set_latency_callback returned {0})")]
    Latency(i32),
    #[error("cannot activate the JACK client: {source}")]
    Activate { source: jack::Error },
}

/// What the JACK threads tell the supervisor.
#[derive(Debug, Default)]
pub struct ServerEvents {
    pub shut_down: AtomicBool,
    /// The period the process handler last saw (0 before the first).
    pub period: AtomicU32,
    /// Some port appeared, so configured connections may now be possible.
    pub ports_changed: AtomicBool,
}

/// Runs on the JACK thread.
pub struct ProcessHandler {
    inputs: Vec<Port<AudioIn>>,
    outputs: Vec<Port<AudioOut>>,
    midi_in: Port<MidiIn>,
    midi_out: Port<MidiOut>,
    engine: Engine,
    /// The period of every voice one after the other, as the engine takes it (`voices ×
    /// MAX_PERIOD` samples, allocated before activation).
    planar_in: Box<[f32]>,
    planar_out: Box<[f32]>,
    events: Arc<ServerEvents>,
}

impl jack::ProcessHandler for ProcessHandler {
    fn process(&mut self, _: &Client, ps: &ProcessScope) -> Control {
        let frames = ps.n_frames() as usize;
        if frames == 0 {
            return Control::Continue;
        }
        if frames > MAX_PERIOD {
            // The engine passes such periods through; so does this, without the planar copy.
            for (input, output) in self.inputs.iter().zip(self.outputs.iter_mut()) {
                output.as_mut_slice(ps).copy_from_slice(input.as_slice(ps));
            }
            return Control::Continue;
        }
        let len = self.inputs.len() * frames;
        for (row, port) in self.planar_in[..len].chunks_exact_mut(frames).zip(&self.inputs) {
            row.copy_from_slice(port.as_slice(ps));
        }
        let mut writer = self.midi_out.writer(ps);
        self.engine.process(
            &self.planar_in[..len],
            &mut self.planar_out[..len],
            self.midi_in.iter(ps).map(|event| event.bytes),
            |message| {
                // A full port buffer drops the message; nothing on this thread may wait or allocate.
                let _ = writer.write(&RawMidi { time: 0, bytes: message });
            },
        );
        for (row, port) in self.planar_out[..len].chunks_exact(frames).zip(self.outputs.iter_mut()) {
            port.as_mut_slice(ps).copy_from_slice(row);
        }
        Control::Continue
    }

    fn buffer_size(&mut self, _: &Client, size: Frames) -> Control {
        self.engine.set_period(size as usize);
        self.events.period.store(size, Relaxed);
        Control::Continue
    }
}

/// The audio ports' names: `in` / `out` for one voice, `in_K` / `out_K` (K from 1) for more.
pub fn port_names(voices: usize) -> Vec<(String, String)> {
    if voices == 1 {
        return vec![("in".into(), "out".into())];
    }
    (1..=voices).map(|k| (format!("in_{k}"), format!("out_{k}"))).collect()
}

/// Why audio would pass through unprocessed at this rate and period, if it would.
pub fn passthrough_reason(period: u32, server_rate: u32, model_rate: Option<u32>) -> Option<String> {
    if !Reblocker::supports(period as usize) {
        return Some(format!("passthrough: JACK period is {period} frames; autotuned serves 1..={MAX_PERIOD}"));
    }
    match model_rate {
        Some(rate) if rate != server_rate => {
            Some(format!("passthrough: JACK runs at {server_rate} Hz, the model is made for {rate} Hz"))
        }
        _ => None,
    }
}

/// Runs on JACK's notification thread.
pub struct Notifications {
    status: Arc<Status>,
    events: Arc<ServerEvents>,
}

impl jack::NotificationHandler for Notifications {
    /// JACK calls this on each thread it runs for the client (the process thread among them)
    /// before using it: name them, so profilers and `make malloc-count` can tell them apart.
    fn thread_init(&self, _: &Client) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, c"autotuned-rt".as_ptr());
        }
    }

    fn xrun(&mut self, _: &Client) -> Control {
        self.status.xruns.fetch_add(1, Relaxed);
        Control::Continue
    }

    fn port_registration(&mut self, _: &Client, _: jack::PortId, registered: bool) {
        if registered {
            self.events.ports_changed.store(true, Relaxed);
        }
    }

    unsafe fn shutdown(&mut self, _: jack::ClientStatus, _: &str) {
        self.events.shut_down.store(true, Relaxed);
    }
}

/// What JACK's latency callback needs: our audio ports, (in, out) per voice, and the node's
/// delay.
struct LatencyReport {
    ports: Vec<(*mut jack_sys::jack_port_t, *mut jack_sys::jack_port_t)>,
    meters: Arc<Meters>,
}

/// JACK asks, per direction, what latency our ports add: the upstream capture latency plus our
/// delay on each `out`, the downstream playback latency plus our delay on each `in`.
unsafe extern "C" fn report_latency(mode: jack_sys::jack_latency_callback_mode_t, arg: *mut libc::c_void) {
    // SAFETY: `arg` is the `LatencyReport` boxed in the `JackNode`, which outlives the client
    // (the client is closed before the box is dropped), and JACK passes it back unchanged.
    let report = unsafe { &*(arg as *const LatencyReport) };
    let ours = report.meters.latency();
    for &(input, output) in &report.ports {
        let (from, to) = if mode == jack_sys::JackCaptureLatency { (input, output) } else { (output, input) };
        let mut range = jack_sys::jack_latency_range_t { min: 0, max: 0 };
        // SAFETY: both ports belong to this client and stay registered while it is open;
        // `range` is a valid, writable jack_latency_range_t.
        unsafe {
            jack_sys::jack_port_get_latency_range(from, mode, &mut range);
            let (min, max) = (range.min, range.max);
            range.min = min + ours;
            range.max = max + ours;
            jack_sys::jack_port_set_latency_range(to, mode, &mut range);
        }
    }
}

/// An active JACK client running the processor.
pub struct JackNode {
    // Field order matters: the client closes before the latency report it points to is freed.
    client: jack::AsyncClient<Notifications, ProcessHandler>,
    _latency: Box<LatencyReport>,
    pub events: Arc<ServerEvents>,
    client_name: String,
    /// Full names of the audio ports, (in, out) per voice.
    port_names: Vec<(String, String)>,
}

/// The server's rate and period, from a client opened but not yet active.
pub struct OpenClient {
    client: Client,
    pub sample_rate: u32,
    pub period: u32,
}

/// Opens the client (on `settings.server_name` if set) without activating it.
pub fn open(settings: &JackSettings) -> Result<OpenClient, JackError> {
    let client = open_client(&settings.client_name, &settings.server_name)?;
    let sample_rate = client.sample_rate();
    let period = client.buffer_size();
    Ok(OpenClient { client, sample_rate, period })
}

/// Opens client `name` exactly (never renamed, never starting a server) on `server`, or on the
/// default server (`JACK_DEFAULT_SERVER` or `default`) when `server` is empty.
///
/// The server name goes to `jack_client_open` as its `JackServerName` argument rather than
/// through `JACK_DEFAULT_SERVER`, so the process environment is never changed while other
/// threads may read it. The jack crate's `Client::new` cannot pass it: the argument is variadic.
/// The crate's lock around opening and closing clients is private, so open from one thread at a
/// time (the daemon opens only on its supervisor thread; tests hold `jack_lock`).
pub fn open_client(name: &str, server: &str) -> Result<Client, JackError> {
    type ClientOpen = unsafe extern "C" fn(
        *const std::ffi::c_char,
        jack_sys::jack_options_t,
        *mut jack_sys::jack_status_t,
        ...
    ) -> *mut jack_sys::jack_client_t;
    let error = |source| JackError::Open {
        name: name.to_owned(),
        server: if server.is_empty() { "default".into() } else { server.to_owned() },
        source,
    };
    // What the jack crate's `Client::new` would do: JACK's own messages go to our log.
    jack::set_logger(jack::LoggerType::Log);
    let library = jack_sys::library().map_err(|e| error(jack::Error::LibraryError(e.to_string())))?;
    // SAFETY: the type is jack_client_open's prototype in <jack/jack.h>.
    let client_open = unsafe { library.get::<ClientOpen>(b"jack_client_open\0") }
        .map_err(|e| error(jack::Error::LibraryError(e.to_string())))?;
    let no_nul =
        |s: &str| std::ffi::CString::new(s).map_err(|_| error(jack::Error::ClientError(ClientStatus::INVALID_OPTION)));
    let c_name = no_nul(name)?;
    let c_server = no_nul(server)?;
    let options = jack_sys::JackNoStartServer | jack_sys::JackUseExactName;
    let mut status: jack_sys::jack_status_t = 0;
    // SAFETY: both strings are NUL-terminated and outlive the call; with JackServerName the one
    // variadic argument is the server name's `const char *`, as jack_client_open documents.
    let raw = unsafe {
        if server.is_empty() {
            client_open(c_name.as_ptr(), options, &mut status)
        } else {
            client_open(c_name.as_ptr(), options | jack_sys::JackServerName, &mut status, c_server.as_ptr())
        }
    };
    if raw.is_null() {
        return Err(error(jack::Error::ClientError(ClientStatus::from_bits_truncate(status))));
    }
    // SAFETY: `raw` is a client jack_client_open just returned; the `Client` owns and closes it.
    Ok(unsafe { Client::from_raw(raw) })
}

/// The parts of the node that do not come from JACK.
pub struct NodeParts {
    pub processor: crate::rt::Processor,
    /// The rate the loaded model is made for; `None` without a model.
    pub model_rate: Option<u32>,
    pub midi_channels: MidiChannels,
    pub status: Arc<Status>,
    pub meters: Arc<Meters>,
}

impl OpenClient {
    /// Registers the ports and the latency callback, activates with the processor, and makes
    /// the configured connections. Returns the node and the connections that failed.
    pub fn activate(self, settings: &JackSettings, parts: NodeParts) -> Result<(JackNode, Vec<String>), JackError> {
        let voices = parts.processor.voices();
        let port = |port: &str| {
            let port = port.to_owned();
            move |source| JackError::Port { port, source }
        };
        let mut inputs = Vec::with_capacity(voices);
        let mut outputs = Vec::with_capacity(voices);
        for (input, output) in port_names(voices) {
            inputs.push(self.client.register_port(&input, AudioIn::default()).map_err(port(&input))?);
            outputs.push(self.client.register_port(&output, AudioOut::default()).map_err(port(&output))?);
        }
        let midi_in = self.client.register_port("midi_in", MidiIn::default()).map_err(port("midi_in"))?;
        let midi_out = self.client.register_port("midi_out", MidiOut::default()).map_err(port("midi_out"))?;
        let events = Arc::new(ServerEvents::default());
        events.period.store(self.period, Relaxed);
        let engine = Engine::new(
            parts.processor,
            self.sample_rate,
            self.period as usize,
            parts.model_rate,
            Arc::clone(&parts.meters),
        )
        .with_midi_channels(parts.midi_channels);

        let latency = Box::new(LatencyReport {
            ports: inputs.iter().zip(&outputs).map(|(i, o)| (i.raw(), o.raw())).collect(),
            meters: parts.meters,
        });
        // SAFETY: the client is open and not yet active; the callback and its argument (the box
        // above, kept in the JackNode until after the client closes) stay valid for its lifetime.
        let rc = unsafe {
            jack_sys::jack_set_latency_callback(
                self.client.raw(),
                Some(report_latency),
                &*latency as *const LatencyReport as *mut libc::c_void,
            )
        };
        if rc != 0 {
            return Err(JackError::Latency(rc));
        }

        let client_name = self.client.name().to_owned();
        let port_names = inputs
            .iter()
            .zip(&outputs)
            .map(|(i, o)| (i.name().unwrap_or_default(), o.name().unwrap_or_default()))
            .collect();
        let handler = ProcessHandler {
            inputs,
            outputs,
            midi_in,
            midi_out,
            engine,
            planar_in: vec![0.0; voices * MAX_PERIOD].into_boxed_slice(),
            planar_out: vec![0.0; voices * MAX_PERIOD].into_boxed_slice(),
            events: Arc::clone(&events),
        };
        let notifications = Notifications { status: parts.status, events: Arc::clone(&events) };
        let client =
            self.client.activate_async(notifications, handler).map_err(|source| JackError::Activate { source })?;
        let node = JackNode { client, _latency: latency, events, client_name, port_names };
        let failed = node.connect(settings);
        Ok((node, failed))
    }
}

impl JackNode {
    /// JACK's DSP load, percent.
    pub fn cpu_load(&self) -> f32 {
        self.client.as_client().cpu_load()
    }

    /// Connects every port matching the configured patterns (anchored POSIX regular
    /// expressions, as `jack_get_ports` takes them) that is not connected yet. Returns what
    /// failed; ports that do not exist yet are not failures, they are tried again when ports
    /// appear.
    pub fn connect(&self, settings: &JackSettings) -> Vec<String> {
        let client = self.client.as_client();
        let own = format!("{}:", self.client_name);
        let mut failed = Vec::new();
        let mut link = |pattern: &str, flags: PortFlags, ours: &str, ours_is_destination: bool| {
            for port in client.ports(Some(&format!("^({pattern})$")), Some("audio"), flags) {
                if port.starts_with(&own) {
                    continue;
                }
                let (from, to) = if ours_is_destination { (port.as_str(), ours) } else { (ours, port.as_str()) };
                let connected = client.port_by_name(ours).is_some_and(|p| p.is_connected_to(&port).unwrap_or(false));
                if !connected {
                    if let Err(e) = client.connect_ports_by_name(from, to) {
                        failed.push(format!("{from} -> {to}: {e}"));
                    }
                }
            }
        };
        // One voice takes every pattern; with more, pattern K is voice K's.
        let voice_of = |index: usize| if self.port_names.len() == 1 { 0 } else { index };
        for (index, pattern) in settings.connect_inputs.iter().enumerate() {
            if let Some((input, _)) = self.port_names.get(voice_of(index)) {
                link(pattern, PortFlags::IS_OUTPUT, input, true);
            }
        }
        for (index, pattern) in settings.connect_outputs.iter().enumerate() {
            if let Some((_, output)) = self.port_names.get(voice_of(index)) {
                link(pattern, PortFlags::IS_INPUT, output, false);
            }
        }
        failed
    }

    /// Asks JACK to query every client's latency again (after our delay changed).
    pub fn recompute_latencies(&self) {
        // SAFETY: the client is open; this only schedules latency callbacks.
        unsafe {
            jack_sys::jack_recompute_total_latencies(self.client.as_client().raw());
        }
    }

    /// Deactivates and closes the client.
    pub fn close(self) -> Result<(), jack::Error> {
        let JackNode { client, _latency, .. } = self;
        let result = client.deactivate().map(drop);
        drop(_latency);
        result
    }
}
