import pytest
import torch
from tiny_models import save_hf_ctc_model

from lightning_tx.data import SpeechDataModule, read_alignment, read_manifest
from lightning_tx.encoders import CTCForcedAligner
from lightning_tx.scoring import alignment_frame_labels, broadcast_frame_labels, uniform_frame_labels


def test_broadcast():
    labels, mask = broadcast_frame_labels(torch.tensor([2, 0]), torch.tensor([3, 1]), steps=4)
    assert labels.tolist() == [[2, 2, 2, 0], [0, 0, 0, 0]]
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False]]


def test_alignment_labels_take_the_segment_of_each_frame_centre():
    segments = [[(0.0, 0.025, "sil"), (0.025, 0.06, "a"), (0.06, 0.1, "b")]]
    vocabulary = {"sil": 0, "a": 1, "b": 2}
    labels, mask = alignment_frame_labels(segments, torch.tensor([10]), 100.0, vocabulary)
    assert labels[0].tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2] and mask.all()
    labels, mask = alignment_frame_labels(segments, torch.tensor([5]), 50.0, vocabulary, exclude=("sil",))
    assert labels[0].tolist() == [0, 1, 1, 2, 2] and mask[0].tolist() == [False, True, True, True, True]
    with pytest.raises(ValueError, match="'c' is not in the vocabulary"):
        alignment_frame_labels([[(0.0, 0.1, "c")]], torch.tensor([5]), 50.0, vocabulary)


def test_uniform_segmentation():
    labels, mask = uniform_frame_labels([[5, 6], []], torch.tensor([5, 3]))
    assert labels[0].tolist() == [5, 5, 5, 6, 6] and not mask[1].any()


def _oracle_emissions(segments, frame_rate, token_ids, num_frames, generator):
    """CTC log-probs that favour the true phone inside its segment and blank in silence."""
    logits = 0.5 * torch.randn(num_frames, len(token_ids) + 1, generator=generator)
    centres = (torch.arange(num_frames) + 0.5) / frame_rate
    for start, end, label in segments:
        inside = (centres >= start) & (centres < end)
        if label == "sil":
            logits[inside, 0] += 4.0
        else:
            logits[inside, token_ids[label]] += 4.0
    return torch.log_softmax(logits, dim=-1)


def test_forced_alignment_agrees_with_the_synthesizer_timings(tiny_corpus):
    """(b) vs (c) on corpus audio where the truth (eSpeak's phone timings) is known: a CTC
    forced alignment whose emissions carry that truth (with noise) must give the same
    frame labels at another encoder's frame rate."""
    dm = SpeechDataModule(manifest=tiny_corpus)
    dm.setup()
    phones = [p for p in dm.alignment_labels if p != "sil"]
    token_ids = {p: i + 1 for i, p in enumerate(phones)}
    names = {i: p for p, i in token_ids.items()}
    vocabulary = dm.alignment_label_to_id
    generator = torch.Generator().manual_seed(0)
    ctc_rate, encoder_rate = 50.0, 100.0
    agreements, coverage = [], []
    for record in read_manifest(tiny_corpus):
        truth = read_alignment(record.alignment)
        duration = truth[-1][1]
        emissions = _oracle_emissions(truth, ctc_rate, token_ids, int(duration * ctc_rate), generator)
        aligner = CTCForcedAligner(
            emissions=None,
            frame_rate=ctc_rate,
            tokenize=lambda t: [token_ids[p] for p in t.split()],
            token_names=names.__getitem__,
            blank=0,
        )
        transcript = " ".join(label for _, _, label in truth if label != "sil")
        forced = aligner.align_emissions(emissions, aligner.tokenize(transcript))
        assert [label for _, _, label in forced] == transcript.split()
        frames = torch.tensor([int(duration * encoder_rate)])
        true_labels, true_mask = alignment_frame_labels([truth], frames, encoder_rate, vocabulary, exclude=("sil",))
        ctc_labels, ctc_mask = alignment_frame_labels([forced], frames, encoder_rate, vocabulary)
        both = true_mask & ctc_mask
        agreements.append(float((true_labels[both] == ctc_labels[both]).float().mean()))
        coverage.append(float(both.sum() / true_mask.sum()))
    assert sum(agreements) / len(agreements) > 0.95
    assert sum(coverage) / len(coverage) > 0.8


def test_hf_ctc_aligner_plumbing(tiny_corpus, model_dir):
    aligner = CTCForcedAligner.from_pretrained(save_hf_ctc_model(str(model_dir / "ctc")))
    assert aligner.frame_rate == 50.0
    dm = SpeechDataModule(manifest=tiny_corpus, batch_size=3, shuffle=False)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    segments = aligner.align(batch["waveforms"], batch["lengths"], batch["texts"])
    for text, utterance, length in zip(batch["texts"], segments, batch["lengths"], strict=True):
        assert "".join(label for _, _, label in utterance) == text
        assert all(0 <= s < e <= length / 16000 + 1e-9 for s, e, _ in utterance)
        assert all(a[1] <= b[0] for a, b in zip(utterance, utterance[1:], strict=False))
    with pytest.raises(ValueError, match="too short for its transcript"):
        aligner.align_emissions(torch.zeros(2, 30).log_softmax(-1), [5, 6, 7])
