"""Scoring throughput: bare model forward vs HFEncoder vs HFEncoder plus scoring.

For a wav2vec2-base-size and a large-size configuration (random weights built from a
config: nothing downloaded), batches of ``--batch`` utterances of ``--seconds`` s:

1. the bare Hugging Face model forward with all hidden states (inputs prepared once);
2. ``HFEncoder`` (feature extraction, padding, masks, frame lengths, every layer);
3. ``HFEncoder`` plus the scoring engine with LogME, H-score and GBC on every layer.

It prints audio-seconds per second for each, the ratios, and the time that
"10 candidates x 1 hour of audio, every layer, three estimators" would take. On a GPU it
uses bf16 autocast (``--precision``); on the CPU ``--small`` shrinks everything to seconds.

    .venv/bin/python benchmarks/gpu_scoring.py --small        # CPU smoke run
    python benchmarks/gpu_scoring.py                          # on a GPU machine
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from lightning_tx.encoders import HFEncoder
from lightning_tx.scoring import LayerScorer

SIZES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "small": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                  conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2),
}  # fmt: skip


def build(size: str, folder: str) -> str:
    import transformers as tf

    config = tf.Wav2Vec2Config(**SIZES[size], feat_extract_norm="layer", do_stable_layer_norm=True)
    tf.Wav2Vec2Model(config).save_pretrained(folder)
    tf.Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True).save_pretrained(folder)
    return folder


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(run, batches: int, audio_seconds: float, device: torch.device) -> float:
    run()  # warm-up
    synchronize(device)
    started = time.perf_counter()
    for _ in range(batches):
        run()
    synchronize(device)
    return batches * audio_seconds / (time.perf_counter() - started)


def measure(size: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        encoder = HFEncoder(build(size, folder), precision=args.precision).to(device)
    samples = int(args.seconds * encoder.sample_rate)
    waveforms = 0.1 * torch.randn(args.batch, samples, device=device)
    lengths = torch.full((args.batch,), samples, device=device)
    audio = args.batch * args.seconds
    values = (waveforms - waveforms.mean(1, keepdim=True)) / waveforms.std(1, keepdim=True)
    mask = torch.ones_like(values, dtype=torch.long)
    dtype = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}[args.precision]

    def bare():
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            encoder.model(values, attention_mask=mask, output_hidden_states=True)

    labels = torch.randint(0, 10, (args.batch,), device=device)
    scorer = LayerScorer(encoder.layer_dims, ["logme", "hscore", "gbc"], 10).to(device)

    def scored():
        output = encoder(waveforms, lengths)
        steps = output.hidden_states[0].shape[1]
        frame_mask = torch.arange(steps, device=device) < output.frame_lengths.to(device).unsqueeze(1)
        scorer.update(output.hidden_states, frame_mask, labels.unsqueeze(1).expand(-1, steps))

    return {
        "bare": throughput(bare, args.batches, audio, device),
        "encoder": throughput(lambda: encoder(waveforms, lengths), args.batches, audio, device),
        "scored": throughput(scored, args.batches, audio, device),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny model and batches (CPU smoke run)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--precision", default=None, help="32, bf16 or 16 (default: bf16 on CUDA, else 32)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.precision = args.precision or ("bf16" if device.type == "cuda" else "32")
    sizes = ["small"] if args.small else ["base", "large"]
    if args.small:
        args.batch, args.seconds, args.batches = 4, 2.0, 3
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}; precision {args.precision}; batches of {args.batch} x {args.seconds:g} s")
    for size in sizes:
        rates = measure(size, args, device)
        hour = 10 * 3600 / rates["scored"]
        print(
            f"  {size:>5}: bare {rates['bare']:9.0f} audio-s/s | HFEncoder {rates['encoder']:9.0f} "
            f"({rates['bare'] / rates['encoder']:.2f}x slower) | + LogME, H-score, GBC on every layer "
            f"{rates['scored']:9.0f} ({rates['encoder'] / rates['scored']:.2f}x slower) | 10 candidates x 1 h: "
            f"{hour:.0f} s"
        )


if __name__ == "__main__":
    main()
