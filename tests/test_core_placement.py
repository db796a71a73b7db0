"""Choice of a target path (SPEC §5): watermark, priority, balance, and
filesystems shared by several paths.

The reference model below uses exact integer arithmetic:
a path is open when ``(used + planned) * 100 < watermark * capacity`` and the
file still fits (``used + planned + size <= capacity``).
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synchrod.core.placement import FsUsage, Placer


@dataclass(frozen=True)
class P:
    path: str
    priority: int = 0
    balance: float = 1.0
    watermark: int = 90


def usage(fs_id=1, capacity=1000, used=0):
    return FsUsage(fs_id, capacity, used)


# --- watermark ---------------------------------------------------------------------

def test_path_below_watermark_takes_file():
    assert Placer([P("/a", watermark=50)], {"/a": usage(used=499)}).place(1) == "/a"


def test_path_at_watermark_takes_nothing():
    pl = Placer([P("/a", watermark=50)], {"/a": usage(used=500)})
    assert pl.place(1) is None
    assert pl.full()


def test_path_above_watermark_takes_nothing():
    assert Placer([P("/a", watermark=50)], {"/a": usage(used=800)}).place(1) is None


def test_planned_bytes_count_toward_watermark():
    pl = Placer([P("/a", watermark=50)], {"/a": usage(capacity=1000, used=0)})
    got = [pl.place(100) for _ in range(7)]
    assert got == ["/a"] * 5 + [None, None]   # 500 planned = 50 %: closed
    assert pl.planned == {1: 500}
    assert pl.full()


def test_file_that_does_not_fit_is_refused_even_below_watermark():
    pl = Placer([P("/a", watermark=100)], {"/a": usage(capacity=1000, used=900)})
    assert pl.place(101) is None
    assert pl.place(100) == "/a"
    assert pl.place(0) is None       # now 100 % used


def test_path_without_usage_or_capacity_takes_nothing():
    pl = Placer([P("/missing"), P("/zero"), P("/ok", priority=-5)],
                {"/zero": usage(fs_id=2, capacity=0, used=0), "/ok": usage(fs_id=3)})
    assert pl.place(10) == "/ok"
    assert Placer([P("/missing")], {}).place(1) is None
    assert Placer([P("/missing")], {}).full()


def test_full_is_false_while_any_path_open():
    pl = Placer([P("/a", watermark=10), P("/b", watermark=95)],
                {"/a": usage(1, used=100), "/b": usage(2, used=940)})
    assert not pl.full()
    assert pl.place(10) == "/b"      # 95 % reached
    assert pl.full()


def test_full_then_later_cycle_with_new_space():
    full = Placer([P("/a", watermark=90)], {"/a": usage(used=950)})
    assert full.place(1) is None
    assert Placer([P("/a", watermark=90)], {"/a": usage(used=100)}).place(1) == "/a"


@pytest.mark.parametrize("watermark", [29, 57, 58])
def test_exactly_at_watermark_is_closed_for_every_percentage(watermark):
    pl = Placer([P("/a", watermark=watermark)], {"/a": usage(capacity=100, used=watermark)})
    assert pl.place(1) is None


def test_exactly_at_watermark_other_percentages_are_closed():
    for wm in set(range(1, 101)) - {29, 57, 58}:
        pl = Placer([P("/a", watermark=wm)], {"/a": usage(capacity=100, used=wm)})
        assert pl.place(1) is None, wm


# --- priority -------------------------------------------------------------------------

def test_highest_priority_open_path_wins():
    paths = [P("/low", priority=-1), P("/mid", priority=0), P("/high", priority=5)]
    use = {p.path: usage(i) for i, p in enumerate(paths)}
    pl = Placer(paths, use)
    assert [pl.place(10) for _ in range(3)] == ["/high"] * 3


def test_full_high_priority_path_falls_back_to_next_priority():
    paths = [P("/low", priority=-1), P("/mid", priority=0, watermark=50), P("/high", priority=5)]
    use = {"/low": usage(1), "/mid": usage(2, used=100), "/high": usage(3, used=950)}
    pl = Placer(paths, use)
    assert pl.place(100) == "/mid"
    assert [pl.place(100) for _ in range(4)] == ["/mid", "/mid", "/mid", "/low"]


def test_higher_priority_ignores_balance_of_lower():
    paths = [P("/a", priority=1, balance=0.01), P("/b", priority=0, balance=1000)]
    pl = Placer(paths, {"/a": usage(1, capacity=10**9), "/b": usage(2, capacity=10**9)})
    assert {pl.place(1000) for _ in range(50)} == {"/a"}


# --- balance ----------------------------------------------------------------------------

def test_equal_priority_equal_balance_alternates():
    paths = [P("/a"), P("/b")]
    pl = Placer(paths, {"/a": usage(1, 10**9), "/b": usage(2, 10**9)})
    assert [pl.place(100) for _ in range(4)] == ["/a", "/b", "/a", "/b"]


def test_balance_three_to_one():
    paths = [P("/a", balance=3), P("/b", balance=1)]
    pl = Placer(paths, {"/a": usage(1, 10**9), "/b": usage(2, 10**9)})
    for _ in range(400):
        pl.place(1000)
    assert pl.given == {"/a": 300_000, "/b": 100_000}


def test_balance_counts_bytes_not_files():
    paths = [P("/a"), P("/b")]
    pl = Placer(paths, {"/a": usage(1, 10**9), "/b": usage(2, 10**9)})
    assert pl.place(900) == "/a"
    assert [pl.place(100) for _ in range(9)] == ["/b"] * 9
    assert pl.given == {"/a": 900, "/b": 900}


def test_shared_given_persists_balance_across_placers():
    given_bytes: dict[str, int] = {}
    paths = [P("/a"), P("/b")]
    use = {"/a": usage(1, 10**9), "/b": usage(2, 10**9)}
    assert Placer(paths, use, given_bytes).place(500) == "/a"
    assert Placer(paths, use, given_bytes).place(500) == "/b"
    assert given_bytes == {"/a": 500, "/b": 500}


# --- shared filesystem --------------------------------------------------------------------

def test_paths_on_one_filesystem_share_its_accounting():
    fs = usage(fs_id=7, capacity=1000, used=0)
    pl = Placer([P("/a", watermark=50), P("/b", watermark=50)], {"/a": fs, "/b": fs})
    got = [pl.place(100) for _ in range(7)]
    assert got == ["/a", "/b", "/a", "/b", "/a", None, None]
    assert pl.planned == {7: 500}


def test_separate_filesystems_each_have_their_own_accounting():
    pl = Placer([P("/a", watermark=50), P("/b", watermark=50)],
                {"/a": usage(1, 1000), "/b": usage(2, 1000)})
    assert sum(pl.place(100) is not None for _ in range(12)) == 10


def test_shared_fs_with_different_watermarks():
    fs = usage(fs_id=3, capacity=1000, used=0)
    pl = Placer([P("/hi", priority=1, watermark=30), P("/lo", watermark=60)], {"/hi": fs, "/lo": fs})
    got = [pl.place(100) for _ in range(7)]
    assert got == ["/hi"] * 3 + ["/lo"] * 3 + [None]


# --- properties -----------------------------------------------------------------------------

@st.composite
def worlds(draw):
    nfs = draw(st.integers(1, 3))
    # capacities are powers of two so used/capacity*100 is exact in floating point
    fss = []
    for fs_id in range(nfs):
        cap = 2 ** draw(st.integers(10, 30))
        fss.append(FsUsage(fs_id, cap, draw(st.integers(0, cap))))
    npaths = draw(st.integers(1, 5))
    paths, use = [], {}
    for i in range(npaths):
        p = P(f"/p{i}", draw(st.integers(-2, 2)), draw(st.sampled_from([0.5, 1.0, 2.0, 3.0])),
              draw(st.integers(1, 100)))
        paths.append(p)
        use[p.path] = fss[draw(st.integers(0, nfs - 1))]
    sizes = draw(st.lists(st.integers(0, 2 ** 20), min_size=1, max_size=40))
    return paths, use, sizes


@given(worlds())
def test_placement_respects_watermark_and_priority(world):
    paths, use, sizes = world
    pl = Placer(paths, use)
    planned: dict[int, int] = {}
    given_bytes: dict[str, int] = {}
    for size in sizes:
        def is_open(p):
            fs = use[p.path]
            pb = planned.get(fs.fs_id, 0)
            return (fs.used + pb) * 100 < p.watermark * fs.capacity and fs.used + pb + size <= fs.capacity
        open_paths = [p for p in paths if is_open(p)]
        chosen = pl.place(size)
        if not open_paths:
            assert chosen is None
            continue
        spec = next(p for p in paths if p.path == chosen)
        assert spec in open_paths, "chose a path at/above its watermark or too full"
        assert spec.priority == max(p.priority for p in open_paths)
        tier = [p for p in open_paths if p.priority == spec.priority]
        key = lambda p: (given_bytes.get(p.path, 0) + size) / p.balance  # noqa: E731
        assert key(spec) == min(key(p) for p in tier)
        fs = use[chosen]
        planned[fs.fs_id] = planned.get(fs.fs_id, 0) + size
        given_bytes[chosen] = given_bytes.get(chosen, 0) + size
    assert pl.planned == planned
    assert pl.given == given_bytes


@given(st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.0, 5.0]), min_size=2, max_size=5),
       st.lists(st.integers(1, 10_000), min_size=200, max_size=400))
def test_equal_priority_shares_bytes_in_proportion_to_balance(balances, sizes):
    paths = [P(f"/p{i}", 0, b, 100) for i, b in enumerate(balances)]
    use = {p.path: FsUsage(i, 2 ** 50, 0) for i, p in enumerate(paths)}
    pl = Placer(paths, use)
    for s in sizes:
        assert pl.place(s) is not None
    normalised = [pl.given.get(p.path, 0) / p.balance for p in paths]
    # greedy weighted fair share: no path is more than one file ahead of another
    assert max(normalised) - min(normalised) <= max(sizes) / min(balances) + 1e-6
    total = sum(sizes)
    for p in paths:
        error = abs(pl.given.get(p.path, 0) - total * p.balance / sum(balances))
        assert error <= p.balance * max(sizes) / min(balances) + 1e-6


def test_balance_over_many_random_sizes_within_one_percent():
    import random
    rnd = random.Random(1234)
    paths = [P("/a", balance=1), P("/b", balance=2), P("/c", balance=5), P("/d", priority=-1)]
    pl = Placer(paths, {p.path: FsUsage(i, 2 ** 60, 0) for i, p in enumerate(paths)})
    total = 0
    for _ in range(5000):
        size = rnd.randint(1, 50_000_000)
        total += size
        assert pl.place(size) != "/d"
    for path, share in (("/a", 1 / 8), ("/b", 2 / 8), ("/c", 5 / 8)):
        assert abs(pl.given[path] / total - share) < 0.01


@given(st.integers(1, 100), st.integers(0, 2 ** 20))
def test_single_path_opens_exactly_below_watermark(watermark, used_units):
    cap = 2 ** 20
    pl = Placer([P("/a", watermark=watermark)], {"/a": FsUsage(1, cap, used_units)})
    expected_open = used_units * 100 < watermark * cap and used_units + 1 <= cap
    assert (pl.place(1) == "/a") == expected_open
