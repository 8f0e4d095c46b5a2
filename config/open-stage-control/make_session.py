"""Writes autotuned.json, the Open Stage Control session for autotuned's OSC address space.

    python3 config/open-stage-control/make_session.py

Open it in Open Stage Control (File > Open session) with the OSC target set to the daemon,
e.g. `open-stage-control --send 127.0.0.1:9000 --load config/open-stage-control/autotuned.json`.
"""

import json
import pathlib

ROOT = "/autotune"
KEYS = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
SCALES = ["chromatic", "major", "natural_minor", "harmonic_minor", "ionian", "dorian", "phrygian", "lydian",
          "mixolydian", "aeolian", "locrian", "major_pentatonic", "minor_pentatonic", "blues", "whole_tone"]


def widget(kind, wid, address, label, top, left, width, height, **extra):
    return {"type": kind, "id": wid, "label": label, "address": ROOT + address, "top": top, "left": left,
            "width": width, "height": height, "target": "", "preArgs": "", "typeTags": "", **extra}


def fader(wid, address, label, lo, hi, left, **extra):
    return widget("fader", wid, address, label, 60, left, 90, 360, range={"min": lo, "max": hi},
                  design="round", doubleTap=True, **extra)


def meter(wid, address, label, top, unit):
    return widget("text", wid, address, label, top, 620, 260, 50, interaction=False, align="center",
                  html=f"{label}: @{{this.value}} {unit}", **{"default": 0})


def session():
    widgets = [
        fader("strength", "/strength", "Strength", 0, 1, 10),
        fader("retune", "/retune/ms", "Retune ms", 0, 1000, 110),
        fader("transpose", "/transpose", "Transpose", -24, 24, 210, steps=49),
        fader("tuning", "/tuning", "A4 Hz", 400, 480, 310),
        fader("target_note", "/target/note", "Target note", 36, 84, 410, steps=49),
        fader("target_hz", "/target/hz", "Target Hz", 60, 1000, 510, logScale=True),
        widget("dropdown", "mode", "/mode", "Mode", 0, 10, 150, 50, values=["auto", "midi", "manual"]),
        widget("dropdown", "key", "/key", "Key", 0, 170, 110, 50, values=KEYS),
        widget("dropdown", "scale", "/scale", "Scale", 0, 290, 200, 50, values=SCALES),
        widget("button", "bypass", "/bypass", "Bypass", 0, 500, 100, 50, mode="toggle", on=1, off=0),
        widget("button", "release", "/target/release", "Release target", 430, 410, 180, 50, mode="tap", on=1, off=None),
        widget("button", "natural", "/preset", "Natural", 430, 10, 120, 50, mode="tap", on="natural", off=None),
        widget("button", "hard", "/preset", "Hard", 430, 140, 120, 50, mode="tap", on="hard", off=None),
        widget("button", "dump", "/dump", "Refresh", 430, 270, 120, 50, mode="tap", on=1, off=None),
        meter("meter_pitch", "/meter/pitch", "Pitch", 60, "Hz"),
        meter("meter_note", "/meter/note", "Note", 120, ""),
        meter("meter_target", "/meter/target", "Target", 180, "Hz"),
        widget("fader", "meter_cents", "/meter/cents", "Cents off", 240, 620, 260, 60, horizontal=True,
               interaction=False, range={"min": -100, "max": 100}, origin=0),
        widget("fader", "meter_confidence", "/meter/confidence", "Voicing", 310, 620, 260, 60, horizontal=True,
               interaction=False, range={"min": 0, "max": 1}),
        {"type": "script", "id": "subscribe", "label": "Meters", "address": ROOT + "/subscribe",
         "comments": "Renews the 10 s meter lease every 5 s at 30 Hz.",
         "onCreate": "send('" + ROOT + "/subscribe'); setInterval(function () { send('" + ROOT +
                     "/subscribe') }, 5000)"},
    ]
    widgets += [widget("button", f"note_{i}", f"/notes/{i}", name, 500, 10 + i * 50, 45, 45, mode="toggle", on=1, off=0)
                for i, name in enumerate(KEYS)]
    root = {"type": "root", "id": "root", "widgets": widgets, "tabs": [], "address": "auto"}
    return {"createdWith": "Open Stage Control", "version": "1.26.2", "type": "session", "content": root}


if __name__ == "__main__":
    path = pathlib.Path(__file__).with_name("autotuned.json")
    path.write_text(json.dumps(session(), indent=2) + "\n")
    print(f"wrote {path}")
