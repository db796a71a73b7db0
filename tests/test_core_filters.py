"""Candidate intervals and file-type switches (SPEC §3.1-3.2), names of the
copies on the target (SPEC §3.6) and the retry policy (SPEC §3.8)."""
from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synchrod.core import backoff
from synchrod.core.filters import interval_start, taken_files, type_enabled
from synchrod.core.model import MEDIA_TYPES, CFile
from synchrod.core.naming import extension, relpath, sanitise, temp_name

UTC = dt.timezone.utc


@dataclass
class Sw:
    synchronize_audio: bool = True
    synchronize_video: bool = True
    synchronize_screens_recd: bool = True
    synchronize_index_files: bool = True
    only_mixed: bool = False
    extra_file_types: tuple = ()


def cf(id_, cftype):
    return CFile(id_, cftype, 10, f"/rec/{id_}.{cftype.lower()}", None, None, None)


def types(files):
    return [f.cftype for f in files]


ALL = [cf(i + 1, t) for i, t in enumerate(MEDIA_TYPES)]  # AUDIO VIDEO RECD IMAGE MAG ARCHIVE INDEX


# --- file-type switches ------------------------------------------------------------

def test_all_switches_on_only_processed_takes_everything_but_mag():
    assert types(taken_files(ALL, Sw(), only_processed=True)) == \
        ["AUDIO", "VIDEO", "RECD", "IMAGE", "ARCHIVE", "INDEX"]


def test_mag_taken_only_when_not_only_processed():
    assert "MAG" in types(taken_files(ALL, Sw(), only_processed=False))
    assert not type_enabled("MAG", Sw(), only_processed=True)
    assert type_enabled("MAG", Sw(), only_processed=False)


@pytest.mark.parametrize("switch,dropped", [
    ("synchronize_audio", {"AUDIO", "ARCHIVE", "MAG"}),
    ("synchronize_video", {"VIDEO", "IMAGE"}),
    ("synchronize_screens_recd", {"RECD"}),
    ("synchronize_index_files", {"INDEX"}),
])
def test_each_switch_drops_exactly_its_types(switch, dropped):
    sw = Sw(**{switch: False})
    assert set(types(taken_files(ALL, sw, only_processed=False))) == set(MEDIA_TYPES) - dropped


def test_archive_is_taken_like_audio():
    for audio in (True, False):
        for processed in (True, False):
            assert type_enabled("ARCHIVE", Sw(synchronize_audio=audio), processed) is audio
            assert type_enabled("AUDIO", Sw(synchronize_audio=audio), processed) is audio


def test_unknown_type_never_taken():
    assert taken_files([cf(1, "AUDIO"), cf(2, "TEXT"), cf(3, "audio")], Sw(), False) == (cf(1, "AUDIO"),)


def test_only_mixed_drops_video_and_recd_of_couple_without_audio():
    files = [cf(1, "VIDEO"), cf(2, "RECD"), cf(3, "IMAGE"), cf(4, "INDEX")]
    assert types(taken_files(files, Sw(only_mixed=True), True)) == ["IMAGE", "INDEX"]
    assert types(taken_files(files, Sw(only_mixed=False), True)) == ["VIDEO", "RECD", "IMAGE", "INDEX"]


def test_only_mixed_keeps_video_and_recd_when_couple_has_audio():
    files = [cf(1, "VIDEO"), cf(2, "AUDIO"), cf(3, "RECD")]
    assert types(taken_files(files, Sw(only_mixed=True), True)) == ["VIDEO", "AUDIO", "RECD"]


def test_only_mixed_looks_at_the_couple_not_at_what_is_taken():
    # the couple has AUDIO even if this source does not synchronise audio
    files = [cf(1, "AUDIO"), cf(2, "VIDEO")]
    assert types(taken_files(files, Sw(only_mixed=True, synchronize_audio=False), True)) == ["VIDEO"]


def test_taken_files_sorted_by_id():
    files = [cf(9, "AUDIO"), cf(2, "INDEX"), cf(5, "VIDEO")]
    assert [f.id for f in taken_files(files, Sw(), True)] == [2, 5, 9]
    assert taken_files([], Sw(), True) == ()


@given(st.lists(st.sampled_from(MEDIA_TYPES + ("OTHER",)), max_size=10),
       st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_taken_files_rules(kinds, audio, video, recd, index, mixed, processed):
    sw = Sw(audio, video, recd, index, mixed)
    files = [cf(i, k) for i, k in enumerate(kinds)]
    got = taken_files(files, sw, processed)
    has_audio = "AUDIO" in kinds
    switch = {"AUDIO": audio, "ARCHIVE": audio, "MAG": audio and not processed, "VIDEO": video,
              "IMAGE": video, "RECD": recd, "INDEX": index, "OTHER": False}
    expected = [f for f in files if switch[f.cftype]
                and not (mixed and not has_audio and f.cftype in ("VIDEO", "RECD"))]
    assert list(got) == expected
    if processed:
        assert "MAG" not in types(got)


# --- intervals ----------------------------------------------------------------------

@pytest.fixture
def local_tz(monkeypatch):
    def use(name):
        monkeypatch.setenv("TZ", name)
        time.tzset()
    yield use
    monkeypatch.undo()
    time.tzset()


NOW = dt.datetime(2024, 5, 15, 13, 45, 12, 345, tzinfo=UTC)


def test_interval_all_has_no_bound():
    assert interval_start("all", None, NOW) is None


@pytest.mark.parametrize("interval,days", [("last_week", 7), ("last_month", 31)])
def test_fixed_intervals(interval, days):
    assert interval_start(interval, None, NOW) == NOW - dt.timedelta(days=days)


def test_custom_interval():
    assert interval_start("custom", 5, NOW) == dt.datetime(2024, 5, 10, 13, 45, 12, 345, tzinfo=UTC)
    assert interval_start("custom", 365, NOW) == dt.datetime(2023, 5, 16, 13, 45, 12, 345, tzinfo=UTC)


def test_custom_interval_needs_days():
    with pytest.raises(ValueError, match="custom_interval_days"):
        interval_start("custom", None, NOW)


def test_unknown_interval():
    with pytest.raises(ValueError, match="weekly"):
        interval_start("weekly", None, NOW)


def test_yesterday_in_utc(local_tz):
    local_tz("UTC")
    assert interval_start("yesterday", None, NOW) == dt.datetime(2024, 5, 14, tzinfo=UTC)


def test_yesterday_is_local_midnight(local_tz):
    local_tz("Asia/Tokyo")   # UTC+9, no DST; 13:45Z is 22:45 JST on the 15th
    assert interval_start("yesterday", None, NOW) == dt.datetime(2024, 5, 13, 15, 0, tzinfo=UTC)
    late = dt.datetime(2024, 5, 15, 20, 0, tzinfo=UTC)   # 05:00 JST on the 16th
    assert interval_start("yesterday", None, late) == dt.datetime(2024, 5, 14, 15, 0, tzinfo=UTC)


def test_yesterday_west_of_utc(local_tz):
    local_tz("America/Bogota")  # UTC-5, no DST; 02:00Z on the 15th is 21:00 on the 14th
    now = dt.datetime(2024, 5, 15, 2, 0, tzinfo=UTC)
    assert interval_start("yesterday", None, now) == dt.datetime(2024, 5, 13, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize("now,expected", [
    # 2024-10-27 Europe/Prague falls back CEST->CET: yesterday's midnight is 22:00Z
    (dt.datetime(2024, 10, 28, 10, 0, tzinfo=ZoneInfo("Europe/Prague")),
     dt.datetime(2024, 10, 27, 0, 0, tzinfo=ZoneInfo("Europe/Prague"))),
    # 2024-03-31 springs forward CET->CEST: yesterday's midnight is 23:00Z
    (dt.datetime(2024, 4, 1, 10, 0, tzinfo=ZoneInfo("Europe/Prague")),
     dt.datetime(2024, 3, 31, 0, 0, tzinfo=ZoneInfo("Europe/Prague"))),
])
def test_yesterday_across_dst_change(local_tz, now, expected):
    local_tz("Europe/Prague")
    assert interval_start("yesterday", None, now) == expected


# --- naming --------------------------------------------------------------------------

SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")


def test_sanitise_keeps_safe_tokens():
    assert sanitise("abc-DEF_1.2") == "abc-DEF_1.2"
    assert sanitise("_") == "_"


@pytest.mark.parametrize("token", ["a/b", "../x", ".", "..", "", "a b", "é", "x\x00y", ".hidden"])
def test_sanitise_unsafe_tokens_get_a_digest(token):
    out = sanitise(token)
    assert SAFE.match(out) and not out.startswith(".") and "/" not in out
    assert re.search(r"~[0-9a-f]{10}$", out)


def test_sanitise_examples():
    assert sanitise("a/b").startswith("a_b~")
    assert sanitise("a/b") != sanitise("a_b") == "a_b"
    assert sanitise("a/b") != sanitise("a:b")


def test_sanitise_length_limit():
    assert len(sanitise("x" * 96)) == 96 and sanitise("x" * 96) == "x" * 96
    long = sanitise("x" * 97)
    assert len(long) == 96 and long.startswith("x" * 85 + "~")
    assert len(sanitise("s" * 200, 63)) == 63


@given(st.text(max_size=150), st.integers(12, 120))
def test_sanitise_is_deterministic_safe_and_bounded(token, limit):
    out = sanitise(token, limit)
    assert out == sanitise(token, limit)
    assert SAFE.match(out) and not out.startswith(".")
    assert len(out) <= max(limit, 1)


@given(st.text(max_size=120), st.text(max_size=120))
def test_distinct_sids_give_distinct_names(a, b):
    if a != b:
        assert sanitise(a) != sanitise(b)


@pytest.mark.parametrize("path,ext", [("/r/a.WAV", ".wav"), ("/r/a.tar.gz", ".gz"), ("/r/a", ""),
                                      ("/r.d/a", ""), ("/r/.wav", ""), ("/r/a.w v", ""),
                                      ("/r/a." + "x" * 11, ""), ("/r/a." + "x" * 10, "." + "x" * 10),
                                      ("/r/a.mp3/", "")])
def test_extension(path, ext):
    assert extension(path) == ext


def test_relpath_from_utc_start():
    start = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert relpath(start, "sid-1", "rec1", 42, "/rec/x.WAV") == "2024/01/02/01/sid-1+rec1+42.wav"


def test_relpath_crossing_midnight_to_utc():
    start = dt.datetime(2024, 3, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert relpath(start, "s", "r", 1, "/x") == "2024/02/29/23/s+r+1"


def test_relpath_naive_start_taken_as_is():
    assert relpath(dt.datetime(2024, 12, 31, 23, 0), "s", "r", 1, "/a.mp3") == "2024/12/31/23/s+r+1.mp3"


def test_relpath_sanitises_hostile_sid():
    rp = relpath(dt.datetime(2024, 1, 1, tzinfo=UTC), "../../etc/passwd", "rec1", 1, "/a.wav")
    head, name = rp.rsplit("/", 1)
    assert head == "2024/01/01/00"
    assert ".." not in rp.split("/") and name.startswith("_.._etc_passwd~")


@given(st.text(min_size=1, max_size=40), st.integers(1, 10**9),
       st.datetimes(timezones=st.just(UTC)))
def test_relpath_deterministic_and_safe(sid, cfid, start):
    rp = relpath(start, sid, "rec1", cfid, "/a.wav")
    assert rp == relpath(start, sid, "rec1", cfid, "/a.wav")
    parts = rp.split("/")
    assert len(parts) == 5 and all(SAFE.match(p) and p not in (".", "..") for p in parts[:4])
    assert SAFE.match(parts[4].replace("+", "")) and parts[4].count("+") == 2
    assert parts[:4] == [f"{start:%Y}", f"{start:%m}", f"{start:%d}", f"{start:%H}"]


def test_relpath_distinct_calls_never_share_a_name():
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert relpath(start, "A-B", "C", 7, "/a.wav") != relpath(start, "A", "B-C", 7, "/a.wav")


def test_temp_name_is_sibling():
    assert temp_name("/t/2024/01/01/00/s-r-1.wav") == "/t/2024/01/01/00/.synchrod-tmp.s-r-1.wav"


# --- back-off --------------------------------------------------------------------------

def test_delay_doubles_from_base():
    assert [backoff.delay(n, 30) for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1920, 3600]


def test_delay_capped_at_one_hour():
    assert backoff.MAX_DELAY == 3600
    assert backoff.delay(7, 30) == 1920 and backoff.delay(8, 30) == 3600
    assert backoff.delay(10**6, 1) == 3600
    assert backoff.delay(1, 3600) == 3600 and backoff.delay(1, 5000) == 3600


def test_no_delay_before_first_failure():
    assert backoff.delay(0, 30) == 0 and backoff.delay(-3, 30) == 0


@given(st.integers(1, 200), st.integers(1, 3600))
def test_delay_doubling_property(n, base):
    d = backoff.delay(n, base)
    assert base <= d <= 3600 or (base > 3600 and d == 3600)
    assert backoff.delay(n + 1, base) == min(2 * d, 3600)


@pytest.mark.parametrize("attempts,max_attempts,mark,expected", [
    (1, 3, True, False), (2, 3, True, False), (3, 3, True, True), (4, 3, True, True),
    (1, 1, True, True), (3, 3, False, False), (100, 3, False, False), (0, 1, True, False),
])
def test_gives_up(attempts, max_attempts, mark, expected):
    assert backoff.gives_up(attempts, max_attempts, mark) is expected
