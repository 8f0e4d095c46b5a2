//! The README's parameter table and the Open Stage Control session are what the parameter table
//! generates (`make docs` rewrites them), and the session has a control for every parameter.

mod common;

use autotuned::docs::{session, session_json, with_parameter_table};
use autotuned::parameters::{Kind, TABLE};
use common::root;

#[test]
fn the_readme_parameter_table_is_current() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let generated = with_parameter_table(&readme, "/autotune").expect("the README has the generated section");
    assert!(generated == readme, "README.md's parameter table is out of date: run `make docs`");
    for row in &TABLE {
        assert!(readme.contains(&format!("`/autotune{}`", row.address)), "{}", row.name);
    }
}

#[test]
fn the_open_stage_control_session_is_current_and_covers_every_parameter() {
    let path = root().join("config/open-stage-control/autotuned.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text == session_json("/autotune"), "{} is out of date: run `make docs`", path.display());
    let session = session("/autotune");
    let addresses: Vec<&str> =
        session["content"]["widgets"].as_array().unwrap().iter().filter_map(|w| w["address"].as_str()).collect();
    for row in &TABLE {
        let address = format!("/autotune{}", row.address);
        let covered = match row.kind {
            Kind::Mask => (0..12).all(|c| addresses.contains(&format!("{address}/{c}").as_str())),
            _ => addresses.contains(&address.as_str()),
        };
        assert!(covered, "no control for {address}");
    }
}
