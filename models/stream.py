"""Streams a signal through an autotuned ONNX model block by block, feeding state back (ONNX Runtime)."""

import numpy as np
import onnxruntime as ort

from reference import BLOCK, scale_from_mask


def session(model):
    """A session as the daemon configures its own (one thread, no spinning); model: a path or bytes."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                providers=["CPUExecutionProvider"])


def initial_state(sess, voices=1):
    """Zeros for every state input (an input X with an output X_out), `voices` rows of each."""
    outputs = {o.name for o in sess.get_outputs()}
    inputs = sess.get_inputs() + sess.get_overridable_initializers()
    return {i.name: np.zeros([voices] + list(i.shape[1:]), np.float32) for i in inputs if i.name + "_out" in outputs}


def feeds(sess, target_pitch=0.0, strength=1.0, scale_mask=None, tuning_hz=440.0, retune_ms=0.0,
          transpose=0.0, formant_preserve=1.0, formant_shift=0.0, base_only=False, scale_notes=None,
          scale_period=12.0, note_hysteresis=0.25):
    """Control inputs (and zeroed state unless base_only) for sess.run, without audio. The allowed
    notes are `scale_notes` / `scale_period` if given, else the 12 flags `scale_mask`."""
    mask = np.ones(12, np.float32) if scale_mask is None else np.asarray(scale_mask, np.float32)
    result = {} if base_only else initial_state(sess)
    if not base_only:
        notes, period = scale_from_mask(mask) if scale_notes is None else (scale_notes, scale_period)
        result["scale_mask"] = mask.reshape(1, 12)
        result["scale_notes"] = np.asarray(notes, np.float32).reshape(1, -1)
        result["scale_period"] = np.array([[period]], np.float32)
        result["note_hysteresis"] = np.array([[note_hysteresis]], np.float32)
        result["tuning_hz"] = np.array([[tuning_hz]], np.float32)
        result["retune_ms"] = np.array([[retune_ms]], np.float32)
        result["transpose"] = np.array([[transpose]], np.float32)
        result["formant_preserve"] = np.array([[formant_preserve]], np.float32)
        result["formant_shift"] = np.array([[formant_shift]], np.float32)
    result["target_pitch"] = np.array([[target_pitch]], np.float32)
    result["correction_strength"] = np.array([[strength]], np.float32)
    accepted = {i.name for i in sess.get_inputs() + sess.get_overridable_initializers()}
    return {name: value for name, value in result.items() if name in accepted}


def step(sess, names, inputs):
    """One sess.run of inputs; every state output (X_out) is fed back into inputs as X."""
    result = dict(zip(names, sess.run(names, inputs)))
    for name in list(inputs):
        if name + "_out" in result:
            inputs[name] = result[name + "_out"]
    return result


def run(sess, signal, **controls):
    """Returns (output signal, per-block confidence, per-block detected pitch); controls as feeds()."""
    inputs = feeds(sess, **controls)
    names = [o.name for o in sess.get_outputs()]
    blocks = len(signal) // BLOCK
    out, conf, pitch = [], [], []
    for b in range(blocks):
        inputs["audio_buffer"] = np.asarray(signal[b * BLOCK:(b + 1) * BLOCK], np.float32).reshape(1, BLOCK)
        result = step(sess, names, inputs)
        out.append(result["corrected_audio"][0])
        conf.append(float(result["confidence"][0, 0]))
        pitch.append(float(result["detected_pitch"][0, 0]) if "detected_pitch" in result else 0.0)
    return np.concatenate(out) if out else np.zeros(0, np.float32), np.array(conf), np.array(pitch)
