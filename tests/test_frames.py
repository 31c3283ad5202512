import pytest
import torch

from lightning_tx.functional import flatten_frames, frame_targets, lengths_to_mask, tih_frames


def test_flatten_with_lengths_keeps_valid_frames_in_order():
    features = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    frames = flatten_frames(features, lengths=torch.tensor([2, 3]))
    assert frames.shape == (5, 3)
    assert torch.equal(frames, torch.cat([features[0, :2], features[1, :3]]))


def test_mask_and_lengths_agree():
    features = torch.randn(3, 5, 2)
    lengths = torch.tensor([5, 0, 3])
    assert torch.equal(
        flatten_frames(features, lengths=lengths), flatten_frames(features, mask=lengths_to_mask(lengths, 5))
    )


def test_utterance_labels_broadcast_and_frame_labels_select():
    mask = lengths_to_mask(torch.tensor([2, 3]), 4)
    assert frame_targets(torch.tensor([7, 9]), mask).tolist() == [7, 7, 9, 9, 9]
    per_frame = torch.tensor([[1, 2, 0, 0], [3, 4, 5, 0]])
    assert frame_targets(per_frame, mask).tolist() == [1, 2, 3, 4, 5]
    regression = torch.tensor([[0.5, 1.0], [2.0, 3.0]])
    assert frame_targets(regression, mask).shape == (5, 2)


def test_tih_frames_passes_flat_input_through():
    frames, targets = tih_frames(torch.randn(6, 2), torch.arange(6))
    assert frames.shape == (6, 2) and targets.tolist() == list(range(6))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: flatten_frames(torch.randn(2, 4, 3), lengths=torch.tensor([2, 5])), r"\[0, 4\]"),
        (lambda: flatten_frames(torch.randn(2, 4, 3), lengths=torch.tensor([2])), r"\[B\]=\[2\]"),
        (lambda: flatten_frames(torch.randn(2, 4, 3), mask=torch.ones(2, 3)), r"\[B, T\]=\[2, 4\]"),
        (lambda: flatten_frames(torch.randn(2, 4, 3), torch.tensor([1, 1]), torch.ones(2, 4)), "not both"),
        (lambda: tih_frames(torch.randn(2, 4, 3), torch.tensor([1, 2, 3])), "3 rows but the batch has 2"),
        (lambda: tih_frames(torch.randn(5, 3), torch.tensor([1, 2, 3])), "5 frames"),
        (lambda: tih_frames(torch.randn(2, 4, 3), torch.zeros(2, 3, dtype=torch.long)), r"got \(2, 3\)"),
    ],
)
def test_bad_shapes_name_the_problem(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
