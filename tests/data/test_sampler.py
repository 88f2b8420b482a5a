"""SpeakerBatchSampler: N x M structure, seeding, DDP shards and exact resumption."""

from __future__ import annotations

from collections import Counter

import pytest

from voxvec.data.sampler import SpeakerBatchSampler


def make_labels(files_per_speaker: list[int]) -> list[int]:
    """Labels of a dataset whose items are interleaved across speakers (not grouped)."""
    labels: list[int] = []
    remaining = list(files_per_speaker)
    while any(remaining):
        for spk, left in enumerate(remaining):
            if left:
                labels.append(spk * 7 + 3)  # arbitrary, non-contiguous label values
                remaining[spk] -= 1
    return labels


LABELS = make_labels([10, 4, 1, 7, 12, 3, 5, 9, 2, 6, 8])  # 11 speakers, some with few files


def test_batches_are_speaker_major_blocks() -> None:
    sampler = SpeakerBatchSampler(LABELS, n_speakers=3, n_utterances=4, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 11 // 3
    seen: list[int] = []
    for batch in batches:
        assert len(batch) == 12
        blocks = [batch[k * 4 : (k + 1) * 4] for k in range(3)]
        block_labels = [{LABELS[i] for i in block} for block in blocks]
        assert all(len(s) == 1 for s in block_labels)  # each block one speaker
        speakers = [s.pop() for s in block_labels]
        assert len(set(speakers)) == 3  # N distinct speakers
        seen += speakers
    assert len(seen) == len(set(seen))  # one pass: no speaker twice in an epoch


def test_files_drawn_without_replacement_or_repeated_evenly() -> None:
    sampler = SpeakerBatchSampler(LABELS, n_speakers=11, n_utterances=5, seed=0)
    (batch,) = list(sampler)
    for k in range(11):
        block = batch[k * 5 : (k + 1) * 5]
        n_files = Counter(LABELS)[LABELS[block[0]]]
        counts = Counter(block)
        if n_files >= 5:
            assert len(counts) == 5  # distinct files
        else:
            assert len(counts) == n_files  # every file used
            assert max(counts.values()) - min(counts.values()) <= 1  # as evenly as possible


def test_one_file_per_speaker_is_repeated() -> None:
    sampler = SpeakerBatchSampler(list(range(8)), n_speakers=4, n_utterances=3)
    for batch in sampler:
        assert [batch[k * 3] for k in range(4)] == [batch[k * 3 + 2] for k in range(4)]


def test_seeded_per_epoch() -> None:
    a = SpeakerBatchSampler(LABELS, 2, 3, seed=5)
    b = SpeakerBatchSampler(LABELS, 2, 3, seed=5)
    assert list(a) == list(b)
    first = list(a)
    assert list(a) == first  # no set_epoch: the same epoch again
    a.set_epoch(1)
    assert list(a) != first
    assert list(SpeakerBatchSampler(LABELS, 2, 3, seed=6)) != first


def test_batches_per_epoch_takes_more_passes() -> None:
    sampler = SpeakerBatchSampler(LABELS, 4, 2, batches_per_epoch=10)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 10
    per_speaker = Counter(LABELS[b[k * 2]] for b in batches for k in range(4))
    assert len(per_speaker) == 11  # several passes reach every speaker
    for batch in batches:
        assert len({LABELS[batch[k * 2]] for k in range(4)}) == 4  # never a speaker twice


def test_ddp_shards_are_disjoint_equal_and_cover_the_epoch() -> None:
    labels = make_labels([3] * 20)
    world = 3
    shards = [
        list(SpeakerBatchSampler(labels, 2, 2, seed=9, rank=r, world_size=world))
        for r in range(world)
    ]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == (20 // 2) // world
    flat = [tuple(b) for s in shards for b in s]
    assert len(flat) == len(set(flat))
    single = list(SpeakerBatchSampler(labels, 2, 2, seed=9, batches_per_epoch=len(flat)))
    interleaved = [shards[r][k] for k in range(len(shards[0])) for r in range(world)]
    assert interleaved == single


def test_resume_continues_exactly() -> None:
    reference = SpeakerBatchSampler(LABELS, 2, 3, seed=3, batches_per_epoch=6)
    expected = {}
    for epoch in range(2):
        reference.set_epoch(epoch)
        expected[epoch] = list(reference)

    run = SpeakerBatchSampler(LABELS, 2, 3, seed=3, batches_per_epoch=6)
    run.set_epoch(1)
    it = iter(run)
    consumed = [next(it) for _ in range(4)]
    state = run.state_dict()
    assert state == {"epoch": 1, "batches_done": 4}
    assert consumed == expected[1][:4]

    resumed = SpeakerBatchSampler(LABELS, 2, 3, seed=3, batches_per_epoch=6)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # the usual loop calls this again: the position is kept
    assert list(resumed) == expected[1][4:]
    assert resumed.state_dict() == {"epoch": 1, "batches_done": 6}
    assert list(resumed) == expected[1]  # a second pass over the same epoch is whole
    resumed.set_epoch(0)
    assert list(resumed) == expected[0]


def test_state_dict_override_for_prefetching_loaders() -> None:
    sampler = SpeakerBatchSampler(LABELS, 2, 2)
    list(sampler)
    assert sampler.state_dict(batches_done=2) == {"epoch": 0, "batches_done": 2}
    with pytest.raises(ValueError, match="batches_done"):
        sampler.load_state_dict({"epoch": 0, "batches_done": 99})
    with pytest.raises(ValueError, match="key"):
        sampler.load_state_dict({"epoch": 0})


def test_errors() -> None:
    with pytest.raises(ValueError, match="n_speakers"):
        SpeakerBatchSampler([0, 1, 2], n_speakers=4, n_utterances=2)
    with pytest.raises(ValueError, match="world_size"):
        SpeakerBatchSampler([0, 1, 2, 3], n_speakers=2, n_utterances=2, world_size=3)
    with pytest.raises(ValueError, match="rank"):
        SpeakerBatchSampler([0, 1], n_speakers=1, n_utterances=2, rank=2, world_size=2)
    with pytest.raises(ValueError, match=">= 1"):
        SpeakerBatchSampler([0, 1], n_speakers=1, n_utterances=0)
    with pytest.raises(ValueError, match="epoch"):
        SpeakerBatchSampler([0, 1], 1, 1).set_epoch(-1)
