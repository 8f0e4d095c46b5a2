//! Fuzzes the OSC server's whole receive path: nesting check, decoder and dispatcher, with the
//! real address space. Run with `make fuzz` (cargo fuzz, nightly features via RUSTC_BOOTSTRAP).
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use autotuned::control::{Controls, Status};
use autotuned::osc::OscService;
use autotuned::rt::Meters;
use autotuned::settings::Settings;
use libfuzzer_sys::fuzz_target;

fn service() -> &'static Mutex<OscService> {
    static SERVICE: OnceLock<Mutex<OscService>> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let settings = Settings::default();
        let (requests, _) = std::sync::mpsc::channel();
        let (_, answers) = std::sync::mpsc::channel();
        let controls = Arc::new(Controls::new(settings.params));
        let (status, meters) = (Arc::new(Status::default()), Arc::new(Meters::default()));
        Mutex::new(OscService::new(&settings, controls, status, meters, requests, answers))
    })
}

fuzz_target!(|datagram: &[u8]| {
    let from = SocketAddr::from(([127, 0, 0, 1], 9001));
    let mut service = service().lock().unwrap_or_else(|e| e.into_inner());
    for (_, packet) in service.handle(datagram, from) {
        rosc::encoder::encode(&packet).expect("every reply encodes");
    }
});
