//! The JACK node: client, ports, notifications and connections (supervisor thread), and the
//! process handler that hands each period to the [`Processor`] (JACK thread).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

use jack::{AudioIn, AudioOut, Client, ClientOptions, Control, Frames, MidiIn, MidiOut, Port, ProcessScope, RawMidi};

use crate::control::Status;
use crate::rt::{MidiInput, NoteTracker, Processor};
use crate::settings::{JackSettings, MidiSettings};
use crate::BLOCK;

#[derive(Debug, thiserror::Error)]
pub enum JackError {
    #[error("cannot open JACK client `{name}` on server `{server}`: {source} (is a JACK or PipeWire server running? `make run` starts a private one)")]
    Open { name: String, server: String, source: jack::Error },
    #[error("cannot register port `{port}`: {source}")]
    Port { port: &'static str, source: jack::Error },
    #[error("cannot activate the JACK client: {source}")]
    Activate { source: jack::Error },
}

/// Flags the notification thread raises for the supervisor.
#[derive(Debug, Default)]
pub struct ServerEvents {
    pub shut_down: AtomicBool,
    pub buffer_size: AtomicU32,
}

/// Runs on the JACK thread: pass-through unless the period is the model's block size.
pub struct ProcessHandler {
    input: Port<AudioIn>,
    output: Port<AudioOut>,
    midi_in: Port<MidiIn>,
    midi_out: Port<MidiOut>,
    held: MidiInput,
    notes: NoteTracker,
    processor: Processor,
    /// False when the server's rate or period is one the model cannot serve.
    serving: bool,
    model_rate: Option<u32>,
    server_rate: u32,
    events: Arc<ServerEvents>,
}

impl jack::ProcessHandler for ProcessHandler {
    fn process(&mut self, _: &Client, ps: &ProcessScope) -> Control {
        for event in self.midi_in.iter(ps) {
            self.held.feed(event.bytes);
        }
        let input = self.input.as_slice(ps);
        let output = self.output.as_mut_slice(ps);
        if !self.serving {
            output.copy_from_slice(input);
            return Control::Continue;
        }
        let params = self.processor.params();
        let report = self.processor.process(input, output, self.held.target_note(params.bend_range));
        let sung_hz = if report.target_hz > 0.0 { report.target_hz } else { report.detected_hz };
        let note = if sung_hz > 0.0 { 69.0 + 12.0 * (sung_hz / params.tuning_hz).log2() } else { -1.0 };
        let mut writer = self.midi_out.writer(ps);
        for message in self.notes.update(note, report.confidence).iter().flatten() {
            // A full port buffer drops the message; nothing on this thread may wait or allocate.
            let _ = writer.write(&RawMidi { time: 0, bytes: message });
        }
        Control::Continue
    }

    fn buffer_size(&mut self, _: &Client, size: Frames) -> Control {
        self.serving = servable(size, self.server_rate, self.model_rate);
        self.events.buffer_size.store(size, Relaxed);
        Control::Continue
    }
}

fn servable(period: Frames, server_rate: u32, model_rate: Option<u32>) -> bool {
    period as usize == BLOCK && model_rate.is_none_or(|r| r == server_rate)
}

/// Why audio would pass through unprocessed at this rate and period, if it would.
pub fn passthrough_reason(period: u32, server_rate: u32, model_rate: Option<u32>) -> Option<String> {
    if period as usize != BLOCK {
        return Some(format!(
            "passthrough: JACK period is {period} frames, the model needs {BLOCK} (re-blocking is not built yet)"
        ));
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
    fn xrun(&mut self, _: &Client) -> Control {
        self.status.xruns.fetch_add(1, Relaxed);
        Control::Continue
    }

    unsafe fn shutdown(&mut self, _: jack::ClientStatus, _: &str) {
        self.events.shut_down.store(true, Relaxed);
    }
}

/// An active JACK client running the processor.
pub struct JackNode {
    client: jack::AsyncClient<Notifications, ProcessHandler>,
    pub events: Arc<ServerEvents>,
}

/// The server's rate and period, from a client opened but not yet active.
pub struct OpenClient {
    client: Client,
    pub sample_rate: u32,
    pub period: u32,
}

/// Opens the client (on `settings.server_name` if set) without activating it.
pub fn open(settings: &JackSettings) -> Result<OpenClient, JackError> {
    if !settings.server_name.is_empty() {
        // jack_client_open reads the server name from here; set before any client exists.
        std::env::set_var("JACK_DEFAULT_SERVER", &settings.server_name);
    }
    let (client, _status) =
        Client::new(&settings.client_name, ClientOptions::NO_START_SERVER | ClientOptions::USE_EXACT_NAME).map_err(
            |source| JackError::Open {
                name: settings.client_name.clone(),
                server: if settings.server_name.is_empty() { "default".into() } else { settings.server_name.clone() },
                source,
            },
        )?;
    let sample_rate = client.sample_rate();
    let period = client.buffer_size();
    Ok(OpenClient { client, sample_rate, period })
}

impl OpenClient {
    /// Registers `in` and `out`, activates with `processor`, and connects the configured ports.
    /// Returns the node and the connections that failed (logged by the caller).
    pub fn activate(
        self,
        settings: &JackSettings,
        midi: &MidiSettings,
        processor: Processor,
        model_rate: Option<u32>,
        status: Arc<Status>,
    ) -> Result<(JackNode, Vec<String>), JackError> {
        let port = |port| move |source| JackError::Port { port, source };
        let input = self.client.register_port("in", AudioIn::default()).map_err(port("in"))?;
        let output = self.client.register_port("out", AudioOut::default()).map_err(port("out"))?;
        let midi_in = self.client.register_port("midi_in", MidiIn::default()).map_err(port("midi_in"))?;
        let midi_out = self.client.register_port("midi_out", MidiOut::default()).map_err(port("midi_out"))?;
        let block_ms = BLOCK as f32 * 1000.0 / self.sample_rate as f32;
        let min_blocks = (midi.out_min_note_ms / block_ms).ceil() as u32;
        let in_name = input.name().unwrap_or_default();
        let out_name = output.name().unwrap_or_default();
        let events = Arc::new(ServerEvents::default());
        let handler = ProcessHandler {
            events: Arc::clone(&events),
            input,
            output,
            midi_in,
            midi_out,
            held: MidiInput::default(),
            notes: NoteTracker::new(midi.out_channel, min_blocks, midi.out_threshold),
            processor,
            serving: servable(self.period, self.sample_rate, model_rate),
            model_rate,
            server_rate: self.sample_rate,
        };
        let notifications = Notifications { status, events: Arc::clone(&events) };
        let client =
            self.client.activate_async(notifications, handler).map_err(|source| JackError::Activate { source })?;
        let mut failed = Vec::new();
        for source in &settings.connect_inputs {
            if let Err(e) = client.as_client().connect_ports_by_name(source, &in_name) {
                failed.push(format!("{source} -> {in_name}: {e}"));
            }
        }
        for destination in &settings.connect_outputs {
            if let Err(e) = client.as_client().connect_ports_by_name(&out_name, destination) {
                failed.push(format!("{out_name} -> {destination}: {e}"));
            }
        }
        Ok((JackNode { client, events }, failed))
    }
}

impl JackNode {
    /// JACK's DSP load, percent.
    pub fn cpu_load(&self) -> f32 {
        self.client.as_client().cpu_load()
    }

    /// Deactivates and closes the client.
    pub fn close(self) -> Result<(), jack::Error> {
        self.client.deactivate().map(drop)
    }
}
