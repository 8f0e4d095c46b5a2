//! More voices than one machine, on JACK's own network engine: the daemon runs on a netjack2
//! slave server, and a voice reaches it through a master server (`netmanager`), as it would
//! from another host. Both servers run here on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;
use rosc::OscType;

#[test]
fn corrects_a_voice_on_a_netjack2_slave() {
    let _jack = jack_lock();
    let port = free_udp_port();
    let master = JackServer::start_net_master(RATE, 512, port);
    let net_name = unique("at-host");
    let slave = JackServer::start_net_slave(&net_name, port);
    let (to_slave, from_slave) = (format!("{net_name}:to_slave_1"), format!("{net_name}:from_slave_1"));
    wait_for(Duration::from_secs(10), "the slave's ports on the master", || {
        master.ports().is_some_and(|ports| ports.contains(&to_slave) && ports.contains(&from_slave))
    });
    let daemon = Daemon::start(
        &slave,
        Some(&root().join("config/autotuned.toml")),
        &["jack.connect_inputs=system:capture_1", "jack.connect_outputs=system:playback_1"],
        &[],
    );
    OscClient::new().send(daemon.osc, "/autotune/target/note", vec![OscType::Int(57)]);
    wait_for(Duration::from_secs(10), "the daemon's connections on the slave", || {
        let connections = slave.connections();
        connections.contains(&format!("{}:in\n   system:capture_1", daemon.client))
            && connections.contains(&format!("{}:out\n   system:playback_1", daemon.client))
    });

    *current_server() = master.name.clone();
    let (tone, sung) = sharp_a3();
    let mut client = TestClient::between(&to_slave, &from_slave, tone, 8);
    let mut recorded = Vec::new();
    client.record(3.0, &mut recorded);
    client.close();

    assert_lands_on_a3(&recorded, sung, "through netjack2");
}
