"""core.chunks: how a batch is cut for the pipeline — sizes, order, link
mode's single chunk, and the couples of one call never split (two chunks
commit at once)."""
from __future__ import annotations

import random

import pytest

from synchrod.core.chunks import PIPELINE_CHUNKS, PIPELINE_MIN_CHUNK, chunks


def _flat(parts):
    return [x for part in parts for x in part]


def _call_of(item):
    return item[0]


def test_an_empty_batch_has_no_chunk():
    assert chunks([], _call_of) == []
    assert chunks([], _call_of, pipelined=False) == []


def test_link_mode_is_one_chunk_in_batch_order():
    items = [(i % 7, i) for i in range(1000)]
    assert chunks(items, _call_of, pipelined=False) == [items]


@pytest.mark.parametrize("n", [1, PIPELINE_MIN_CHUNK - 1, PIPELINE_MIN_CHUNK, 2 * PIPELINE_MIN_CHUNK,
                               199, 200, 201, 500, 2000])
def test_calls_of_one_couple_give_even_chunks(n):
    items = [(None, i) for i in range(n)]   # no callid: every couple its own call
    parts = chunks(items, _call_of)
    size = max(PIPELINE_MIN_CHUNK, -(-n // PIPELINE_CHUNKS))
    assert _flat(parts) == items
    assert len(parts) <= PIPELINE_CHUNKS
    assert all(len(p) == size for p in parts[:-1])
    assert 0 < len(parts[-1]) <= size


def test_a_small_batch_is_one_chunk():
    items = [(i, i) for i in range(PIPELINE_MIN_CHUNK)]
    assert chunks(items, _call_of) == [items]


def test_a_call_split_across_the_batch_stays_in_one_chunk():
    # call 0's second couple comes last in the batch: it joins its sibling's chunk
    items = [(0, "a")] + [(i, i) for i in range(1, 300)] + [(0, "b")]
    parts = chunks(items, _call_of)
    assert parts[0][:2] == [(0, "a"), (0, "b")]
    assert sorted(_flat(parts), key=str) == sorted(items, key=str)


def test_a_call_larger_than_a_chunk_is_one_chunk():
    items = [(1, i) for i in range(10)] + [(2, i) for i in range(400)] + [(3, i) for i in range(10)]
    parts = chunks(items, _call_of)
    assert [(2, i) for i in range(400)] == [x for p in parts for x in p if x[0] == 2]
    assert sum(1 for p in parts if any(x[0] == 2 for x in p)) == 1


@pytest.mark.parametrize("seed", range(25))
def test_random_batches_keep_every_item_once_and_calls_whole(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 1500)
    items = [(rng.choice([None, *range(rng.randint(1, 400))]), i) for i in range(n)]
    parts = chunks(items, _call_of)
    assert sorted(_flat(parts), key=lambda x: x[1]) == items   # each item once
    home = {}
    for k, part in enumerate(parts):
        for call, _ in part:
            if call is not None:
                assert home.setdefault(call, k) == k, f"call {call} split over chunks"
    # within a chunk, the couples of a call keep their batch order
    for part in parts:
        for call in {c for c, _ in part if c is not None}:
            order = [i for c, i in part if c == call]
            assert order == sorted(order)
    # every chunk but the last reaches the size; none is empty
    size = max(PIPELINE_MIN_CHUNK, -(-n // PIPELINE_CHUNKS))
    assert all(len(p) >= size for p in parts[:-1]) and all(parts)


def test_calls_come_in_the_order_of_their_first_couple():
    items = [(c, i) for i, c in enumerate([5, 3, 5, 9, 3, 1] * 40)]
    order = []
    for call, _ in _flat(chunks(items, _call_of)):
        if call not in order:
            order.append(call)
    assert order == [5, 3, 9, 1]
