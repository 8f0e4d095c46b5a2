"""Trains the learned detector: a small MLP from the last DETECTOR_CONTEXT blocks' decimated CMNDF and
level to a lag posterior and a voicing probability. Offline (`make train`), seeded and deterministic.

    python3 models/train/train.py            # both rates: weights, report, loss curves

Writes models/train/detector-<rate>.npz (committed: `make models` builds the graphs from them),
models/train/report.json and models/train/loss.png. The network replaces YIN's lag pick and its
voicing ramp; the full-rate refinement around the chosen lag stays, so clean accuracy stays.
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import reference as R  # noqa: E402

import data  # noqa: E402

RATES = (44100, 48000)
SEED = 20261204
# Clips per rate: sung lines of SUNG_SECONDS, spoken sentences (talkers x texts, each also said low),
# each heard under NOISINGS random conditions.
SUNG_CLIPS = 400
SUNG_SECONDS = 3.0
NOISINGS = 2
HIDDEN = (96, 64)
LEVEL_SCALE = np.float32(0.1)
# Unvoiced blocks weigh this much more in the voicing loss: calling bleed in a gap "voiced" is a
# wrong note in MIDI out and a warble, while missing a voiced block passes it uncorrected.
UNVOICED_WEIGHT = 3.0
EPOCHS = 14
BATCH = 256
LEARNING_RATE = 2e-3
# Held-out: sung vowels 98-440 Hz with vibrato, clean and in pink noise, babble and a band; and
# the held-out talkers saying the held-out texts low, clean.
HELD_OUT_CLIPS = 40
HELD_OUT_SNRS = (5.0, 10.0, 20.0)
GROSS_CENTS = 75.0
# The first blocks of a stream, whose difference function sees too little history (examples()).
BLIND_BLOCKS = 2
# Noise alone (white, pink, brown, hissing bursts) at voice-like levels: all unvoiced.
NOISE_CLIPS = 60


def condition(rng, voice, f0, rate, noises):
    """The voice under one random condition: clean or under pink noise, babble or a band at 0-20 dB,
    and in a room or not."""
    kind = rng.choice(["clean", "pink", "babble", "band"], p=[0.16, 0.28, 0.28, 0.28])
    if rng.uniform() < 0.3:
        voice = data.room(rng, rate, voice)
    noise = None
    if kind == "pink":
        noise = data.pink(rng, len(voice))
    elif kind != "clean":
        noise = noises[kind].take(rng, len(voice))
    return data.mix(voice, f0, noise, rng.uniform(0.0, 20.0), rng)


def framed(cmnd, e0):
    """Network inputs per block of a stream, made by reference.detector_inputs from a zeroed
    detector state, as the graph makes them."""
    state = np.zeros(1 + (R.DETECTOR_CONTEXT - 1) * (cmnd.shape[1] + 1), np.float32)
    rows = []
    for block_cmnd, block_e0 in zip(cmnd, e0):
        row, state = R.detector_inputs(block_cmnd, block_e0, state)
        rows.append(row)
    return np.stack(rows)


def level_lanes(c):
    """Which input lanes are levels: the peak and each block's level."""
    lanes = np.zeros(1 + R.DETECTOR_CONTEXT * (c.lags_dec + 1), bool)
    lanes[0] = True
    lanes[c.lags_dec + 1::c.lags_dec + 1] = True
    return lanes


def examples(x, f0, c):
    """(inputs, true f0, voiced share) per block of the stream x. The first BLIND_BLOCKS blocks of a
    stream see less history than the longest period plus a block, so their difference function
    is biased towards short lags (the zeros before the stream count as a mismatch): they are
    labelled unvoiced, and a voice that opens a stream is corrected from its third block on."""
    cmnd, e0 = data.features(x, c)
    truth, share = data.block_truth(f0)
    share[:BLIND_BLOCKS] = np.minimum(share[:BLIND_BLOCKS], 0.0)
    x = framed(cmnd, e0)
    # Levels (0-30 nepers) scaled to the CMNDF's range for training; the saved first layer takes
    # them unscaled.
    x[:, level_lanes(c)] *= LEVEL_SCALE
    return x, truth[: len(cmnd)], share[: len(cmnd)]


def training_set(rate):
    c = R.Constants(rate, detector="yin")
    noises = {"babble": data.Babble(rate, data.BABBLE_TALKERS, data.TEXTS), "band": data.Band(rate, SEED)}
    voices = []
    for clip in range(SUNG_CLIPS):
        rng = data.rng_for(SEED, rate, clip, "sung")
        voices.append((rng, *data.sung(rate, rng, SUNG_SECONDS, max_harmonic_hz=4000.0)))
    for t, talker in enumerate(data.TRAIN_TALKERS):
        for k, text in enumerate(data.TEXTS):
            rng = data.rng_for(SEED, rate, t, k, "spoken")
            voices.append((rng, *data.spoken(rate, rng, talker, text)))
            rng = data.rng_for(SEED, rate, t, k, "spoken low")
            voices.append((rng, *data.spoken(rate, rng, talker, text, f0_range=data.LOW_SPOKEN_RANGE)))
    for clip in range(NOISE_CLIPS):
        rng = data.rng_for(SEED, rate, clip, "noise")
        voices.append((rng, data.noise_alone(rng, int(SUNG_SECONDS * rate), rate), np.zeros(int(SUNG_SECONDS * rate))))
    parts = [examples(condition(rng, voice, f0, rate, noises), f0, c)
             for rng, voice, f0 in voices for _ in range(NOISINGS)]
    return [np.concatenate(p) for p in zip(*parts)]


def held_out_audio(rate, clips=HELD_OUT_CLIPS, kinds=("pink", "babble", "band")):
    """{condition: (audio, f0 per sample)}: one stream of sung vowels 98-440 Hz with vibrato, phrases
    and gaps (other seeds, vowels, babble talkers and songs than training), clean and under each
    of `kinds` of noise at HELD_OUT_SNRS, peaks at -12 dBFS."""
    noises = {"babble": data.Babble(rate, data.HELD_OUT_BABBLE, data.HELD_OUT_TEXTS)}
    if "band" in kinds:
        noises["band"] = data.Band(rate, SEED + 3)
    lines = [data.sung(rate, data.rng_for(SEED + 1, rate, clip, "held-out"), 3.0, vowels=data.HELD_OUT_VOWELS,
                       f0_range=(98.0, 440.0)) for clip in range(clips)]
    voice, f0 = (np.concatenate(parts) for parts in zip(*lines))
    sets = {"clean": (data.mix(voice, f0, None, np.inf, data.rng_for(SEED + 2), level_db=-12.0), f0)}
    for noise in kinds:
        for snr in HELD_OUT_SNRS:
            rng = data.rng_for(SEED + 2, rate, noise, int(snr))
            n = data.pink(rng, len(voice)) if noise == "pink" else noises[noise].take(rng, len(voice))
            sets[f"{noise} {snr:g} dB"] = (data.mix(voice, f0, n, snr, rng, level_db=-12.0), f0)
    return sets


def held_out_speech(rate):
    """(audio, f0 per sample): the held-out talkers saying the held-out texts low (LOW_SPOKEN_RANGE),
    clean, peaks at -12 dBFS."""
    parts = [data.spoken(rate, data.rng_for(SEED + 4, rate, t, k, "held-out low"), talker, text,
                         f0_range=data.LOW_SPOKEN_RANGE)
             for t, talker in enumerate(data.HELD_OUT_TALKERS) for k, text in enumerate(data.HELD_OUT_TEXTS)]
    voice, f0 = (np.concatenate(p) for p in zip(*parts))
    return data.mix(voice, f0, None, np.inf, data.rng_for(SEED + 5), level_db=-12.0), f0


def held_out_set(rate):
    """{condition: (inputs, truth, share, audio)} of held_out_audio, and low speech, clean."""
    c = R.Constants(rate, detector="yin")
    sets = held_out_audio(rate) | {"low speech": held_out_speech(rate)}
    return {name: (*examples(x, f0, c), x) for name, (x, f0) in sets.items()}


class Net:
    """The MLP: ReLU hidden layers, then lag logits and a voicing logit. The lag logits also take this
    block's CMNDF times a per-lag weight (a skip past the hidden layers, which are too narrow to carry
    a dip's exact lag); lags YIN prices out are masked."""

    def __init__(self, inputs, lags, rng, mask):
        sizes = (inputs,) + HIDDEN + (lags + 1,)
        self.w = [rng.standard_normal((a, b)).astype(np.float32) * np.float32(np.sqrt(2.0 / a))
                  for a, b in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(b, np.float32) for b in sizes[1:]]
        self.w[-1] *= np.float32(0.1)
        self.skip = np.full(lags, np.float32(-5.0))
        self.lags, self.mask = lags, mask

    def params(self):
        return self.w + self.b + [self.skip]

    def cmnd(self, x):
        return x[:, 1:1 + self.lags]

    def forward(self, x):
        acts = [x]
        for k, (w, b) in enumerate(zip(self.w, self.b)):
            z = acts[-1] @ w + b
            acts.append(np.maximum(z, 0) if k < len(self.w) - 1 else z)
        logits = acts[-1][:, :-1] + self.skip * self.cmnd(x) + self.mask
        return acts, logits, acts[-1][:, -1]

    def backward(self, acts, d_out):
        grads_w, grads_b = [], []
        d = d_out
        for k in reversed(range(len(self.w))):
            grads_w.insert(0, acts[k].T @ d)
            grads_b.insert(0, d.sum(axis=0))
            if k:
                d = (d @ self.w[k].T) * (acts[k] > 0)
        return grads_w + grads_b + [np.sum(d_out[:, :self.lags] * self.cmnd(acts[0]), axis=0)]

    def layers(self, level_lanes):
        """The layers as reference.detector_layers loads them: the first takes the levels unscaled,
        the last takes [hidden | this block's CMNDF] (the skip as a diagonal)."""
        first = self.w[0].copy()
        first[level_lanes] *= LEVEL_SCALE
        skip = np.zeros((self.lags, self.lags + 1), np.float32)
        skip[np.arange(self.lags), np.arange(self.lags)] = self.skip
        weights = [first] + self.w[1:-1] + [np.concatenate([self.w[-1], skip])]
        return {f"w{k}": w for k, w in enumerate(weights)} | {f"b{k}": b for k, b in enumerate(self.b)}


def targets(truth, share, c):
    """Two-hot lag targets (the bins either side of the true decimated lag) and which rows have one."""
    lag = c.sr / np.maximum(truth, 1.0) / R.DEC
    low = np.floor(lag).astype(int)
    frac = lag - low
    has = (share >= 0.5) & (truth > 0) & (low >= c.tau_min_dec) & (low + 1 <= c.lags_dec - 2)
    t = np.zeros((len(truth), c.lags_dec), np.float32)
    rows = np.flatnonzero(has)
    t[rows, low[rows]] = 1 - frac[rows]
    t[rows, low[rows] + 1] = frac[rows]
    return t, has


def loss_and_grad(net, x, truth, share, c):
    acts, logits, v_logit = net.forward(x)
    t, has = targets(truth, share, c)
    known = share >= 0
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = max(len(x), 1)
    lag_loss = -np.sum(t[has] * logp[has]) / n
    d_logits = np.where(has[:, None], np.exp(logp) * t.sum(axis=1, keepdims=True) - t, 0.0) / n
    p = 0.5 * (1 + np.tanh(0.5 * v_logit))
    y = np.clip(share, 0, 1)
    voicing_loss = -np.sum(known * (y * np.log(p + 1e-7) + UNVOICED_WEIGHT * (1 - y) * np.log(1 - p + 1e-7))) / n
    d_v = known * (UNVOICED_WEIGHT * (1 - y) * p - y * (1 - p)) / n
    d_out = np.concatenate([d_logits, d_v[:, None]], axis=1).astype(np.float32)
    return lag_loss + voicing_loss, net.backward(acts, d_out)


def decide(net, x, c):
    """(decimated lag, voicing probability) per row, as the graph takes them."""
    _, logits, v_logit = net.forward(x)
    return np.argmax(logits, axis=1), 0.5 * (1 + np.tanh(0.5 * v_logit))


def yin_decide(x, c):
    """YIN's pick and voicing ramp (reference.yin_pick) on this block's CMNDF in the same inputs."""
    return (np.array(picks) for picks in zip(*(R.yin_pick(row, c) for row in x[:, 1:1 + c.lags_dec])))


def refined(audio, lags):
    """Per block of `audio` (streamed from silence), the period reference.refine finds around DEC
    times its decimated lag: what the model reports."""
    padded = np.concatenate([np.zeros(R.HISTORY, np.float32), np.asarray(audio, np.float32)])
    return np.array([R.refine(padded[b * R.BLOCK:b * R.BLOCK + R.HISTORY + R.BLOCK], int(lag))
                     for b, lag in enumerate(lags)], np.float32)


def scores(lag, p_voiced, truth, share, audio, c):
    """Gross errors (the refined period more than GROSS_CENTS from the truth) over fully voiced
    blocks both call voiced; voicing recall and precision over fully voiced and fully unvoiced
    blocks."""
    voiced_truth, unvoiced_truth = share == 1.0, share == 0.0
    said = p_voiced >= 0.5
    scored = voiced_truth & said
    period = refined(audio, np.where(scored, lag, c.tau_min_dec + 1))
    cents = 1200 * np.abs(np.log2(np.maximum(period, 1.0) * np.maximum(truth, 1.0) / c.sr))
    return {"gross": float(np.mean(cents[scored] > GROSS_CENTS)) if scored.any() else float("nan"),
            "recall": float(np.sum(said & voiced_truth) / max(voiced_truth.sum(), 1)),
            "precision": float(np.sum(said & voiced_truth) / max(np.sum(said & (voiced_truth | unvoiced_truth)), 1))}


def train(rate, log):
    c = R.Constants(rate, detector="yin")
    started = time.time()
    x, truth, share = training_set(rate)
    minutes = len(x) * R.BLOCK / rate / 60
    log(f"{rate} Hz: {len(x)} training blocks ({minutes:.1f} min) in {time.time() - started:.0f} s")
    held = held_out_set(rate)
    rng = np.random.default_rng(SEED)
    net = Net(x.shape[1], c.lags_dec, rng, c.lag_mask)
    params = net.params()
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step = 0
    curves = {"train": [], "held-out": []}
    hx, ht, hs = (np.concatenate(parts) for parts in list(zip(*held.values()))[:3])
    for epoch in range(EPOCHS):
        order = rng.permutation(len(x))
        lr = LEARNING_RATE * 0.5 * (1 + np.cos(np.pi * epoch / EPOCHS))
        total = 0.0
        for start in range(0, len(x), BATCH):
            rows = order[start:start + BATCH]
            loss, grads = loss_and_grad(net, x[rows], truth[rows], share[rows], c)
            total += loss * len(rows)
            step += 1
            for p, g, mm, vv in zip(params, grads, m, v):
                mm *= 0.9
                mm += 0.1 * g
                vv *= 0.999
                vv += 0.001 * g * g
                p -= (lr * (mm / (1 - 0.9**step)) / (np.sqrt(vv / (1 - 0.999**step)) + 1e-8)).astype(np.float32)
        held_loss, _ = loss_and_grad(net, hx, ht, hs, c)
        curves["train"].append(total / len(x))
        curves["held-out"].append(float(held_loss))
        log(f"  epoch {epoch + 1}: train {total / len(x):.4f}, held-out {held_loss:.4f}")
    results = {}
    for name, (hx_, ht_, hs_, audio) in held.items():
        results[name] = {"yin": scores(*yin_decide(hx_, c), ht_, hs_, audio, c),
                         "learned": scores(*decide(net, hx_, c), ht_, hs_, audio, c)}
        log(f"  {name:16} YIN {fmt(results[name]['yin'])}   learned {fmt(results[name]['learned'])}")
    np.savez(HERE / f"detector-{rate}.npz", **net.layers(level_lanes(c)))
    return curves, results, sum(p.size for p in params)


def fmt(s):
    return f"gross {100 * s['gross']:5.1f} %  recall {s['recall']:.3f}  precision {s['precision']:.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, choices=RATES, action="append")
    args = parser.parse_args()
    report = {}
    for rate in args.rate or RATES:
        curves, results, size = train(rate, lambda line: print(line, flush=True))
        report[str(rate)] = {"parameters": size, "curves": curves, "held_out": results}
    (HERE / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(report, HERE / "loss.png")


def plot(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for rate, entry in report.items():
        for name, style in (("train", "-"), ("held-out", "--")):
            values = entry["curves"][name]
            ax.plot(range(1, len(values) + 1), values, style, label=f"{name}, {int(rate) / 1000:g} kHz")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (lag cross-entropy + voicing)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # Fixed metadata so the same training writes the same bytes.
    fig.savefig(path, metadata={"Software": None})


if __name__ == "__main__":
    main()
