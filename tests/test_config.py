"""Configuration (SPEC §4): schema, defaults, key paths in every error,
cross-field rules, file loading and the CLI's exit status 78."""
from __future__ import annotations

import copy
import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synchrod.config import (DEFAULT_PATH, ConfigError, TargetPath, from_dict, load, load_target_dsn,
                             resolve_path)

REPO = Path(__file__).resolve().parent.parent
DELETE = object()


def base() -> dict:
    return {
        "synchro": {"sleep_period": 10},
        "target": {"sysname": "replay", "database": "postgresql://callrec@replay/callrec",
                   "default_path": "/opt/callrec/data/calls",
                   "additional_paths": [{"path": "/data2/calls"}, {"path": "/data3/calls"}]},
        "sources": [
            {"sysname": "src1", "database": "postgresql://callrec@rec1/callrec", "mount_path": "/mnt/a"},
            {"sysname": "src2", "database": "postgresql://callrec@rec2/callrec", "mount_path": "/mnt/b"},
        ],
        "monitor": {"users": [{"name": "admin", "password_hash": HASH}]},
    }


HASH = "scrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA==$ZGlnZXN0ZGlnZXN0ZGlnZXN0ZGlnZXN0ZGlnZXM="


def test_monitor_needs_users_to_listen_beyond_loopback():
    for listen in ("127.0.0.1:9218", "127.0.0.2:1", "[::1]:9218", "localhost:9218"):
        raw = with_value(with_value(base(), "monitor.users", []), "monitor.listen", listen)
        assert from_dict(raw).monitor.listen == listen
    for listen in ("0.0.0.0:9218", "10.1.2.3:9218", "[::]:9218", "replay.example.com:9218"):
        raw = with_value(with_value(base(), "monitor.users", []), "monitor.listen", listen)
        err = error(raw)
        assert err.path == "monitor.listen" and "monitor.users" in err.message
        assert from_dict(with_value(base(), "monitor.listen", listen)).monitor.listen == listen
    # a disabled monitor listens nowhere
    raw = with_value(with_value(with_value(base(), "monitor.users", []), "monitor.listen",
                                "0.0.0.0:9218"), "monitor.enabled", False)
    assert not from_dict(raw).monitor.enabled


def test_monitor_user_listed_twice():
    raw = with_value(base(), "monitor.users", [{"name": "admin", "password_hash": HASH},
                                               {"name": "admin", "password_hash": HASH}])
    assert error(raw).path == "monitor.users[1].name"


def with_value(raw: dict, keypath: str, value) -> dict:
    raw = copy.deepcopy(raw)
    tokens = re.findall(r"[^.\[\]]+|\[\d+\]", keypath)
    node = raw
    for tok in tokens[:-1]:
        node = node[int(tok[1:-1])] if tok.startswith("[") else node.setdefault(tok, {})
    last = tokens[-1]
    key = int(last[1:-1]) if last.startswith("[") else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return raw


def error(raw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        from_dict(raw)
    return info.value


def test_base_is_valid():
    cfg = from_dict(base())
    assert [s.sysname for s in cfg.sources] == ["src1", "src2"]


# --- defaults ------------------------------------------------------------------------------

def test_minimal_config_gets_spec_defaults():
    cfg = from_dict({"synchro": {"sleep_period": 10},
                     "target": {"sysname": "replay", "database": "postgresql://r/db",
                                "default_path": "/opt/callrec/data/calls"},
                     "sources": [{"sysname": "src1", "database": "postgresql://s/db",
                                  "mount_path": "/mnt/rec_cluster_A"}]})
    s = cfg.synchro
    assert (s.enabled, s.sleep_period, s.calls_per_period, s.only_finished, s.only_processed,
            s.synchronize_voice_tags, s.mark_erroneous, s.max_attempts,
            s.synchronize_couples_without_streams, s.verify, s.start_at) == \
        (True, 10, 200, True, True, True, False, 3, False, "size", None)
    assert cfg.target.audio_paths == (TargetPath("/opt/callrec/data/calls", 0, 1.0, 90),)
    assert cfg.target.video_paths == cfg.target.audio_paths
    src = cfg.sources[0]
    assert (src.enabled, src.group, src.interval, src.custom_interval_days,
            src.synchronize_already_synchronized, src.require_mount, src.copy_files, src.only_mixed,
            src.synchronize_audio, src.synchronize_video, src.synchronize_screens_recd,
            src.synchronize_index_files) == \
        (True, "default", "last_week", None, False, False, True, False, True, True, True, True)
    assert (src.extra_file_types, src.text_encoding) == ((), None)
    assert (cfg.monitor.enabled, cfg.monitor.listen, cfg.monitor.users) == (True, "127.0.0.1:9218", ())
    assert (cfg.logging.level, cfg.logging.format) == ("info", "json")
    assert cfg.path is None


def test_no_sources_and_null_sections_take_defaults():
    raw = base()
    raw["sources"], raw["monitor"], raw["logging"] = None, None, None
    cfg = from_dict(raw)
    assert cfg.sources == () and cfg.monitor.listen == "127.0.0.1:9218" and cfg.logging.level == "info"


def test_target_paths_built_with_priority_balance_and_inherited_watermark():
    raw = base()
    raw["target"]["default_watermark"] = 80
    raw["target"]["additional_paths"] = [{"path": "/d2", "priority": 5, "balance": 2, "watermark": 95},
                                         {"path": "/d3/"}]
    raw["target"]["video_paths"] = {"default_path": "/v1", "additional_paths": [
        {"path": "/v2", "priority": -1, "balance": 0.5}]}
    t = from_dict(raw).target
    assert t.audio_paths == (TargetPath("/opt/callrec/data/calls", 0, 1.0, 80),
                             TargetPath("/d2", 5, 2.0, 95), TargetPath("/d3", 0, 1.0, 80))
    assert t.video_paths == (TargetPath("/v1", 0, 1.0, 80), TargetPath("/v2", -1, 0.5, 80))
    raw["target"]["video_paths"]["default_watermark"] = 70
    assert [p.watermark for p in from_dict(raw).target.video_paths] == [70, 70]


def test_paths_are_normalised():
    raw = with_value(base(), "sources[0].mount_path", "/mnt/x/../a/./b/")
    assert from_dict(raw).sources[0].mount_path == "/mnt/a/b"


def test_start_at_parsing():
    raw = with_value(base(), "synchro.start_at", "2024-06-01T08:30:00+02:00")
    assert from_dict(raw).synchro.start_at == dt.datetime(2024, 6, 1, 6, 30, tzinfo=dt.timezone.utc)
    naive = from_dict(with_value(base(), "synchro.start_at", "2024-06-01T08:30:00")).synchro.start_at
    assert naive.tzinfo is not None and naive.replace(tzinfo=None) == dt.datetime(2024, 6, 1, 8, 30)


# --- every key's type and range error names the key path --------------------------------------

BAD = [
    ("synchro.sleep_period", 0), ("synchro.sleep_period", 86401), ("synchro.sleep_period", "10"),
    ("synchro.sleep_period", True), ("synchro.sleep_period", 1.5), ("synchro.sleep_period", DELETE),
    ("synchro.enabled", "yes"), ("synchro.enabled", 1), ("synchro.calls_per_period", 0),
    ("synchro.only_finished", "true"), ("synchro.only_processed", 0),
    ("synchro.synchronize_voice_tags", "no"), ("synchro.mark_erroneous", "x"),
    ("synchro.max_attempts", 0), ("synchro.synchronize_couples_without_streams", "x"),
    ("synchro.verify", "md5"), ("synchro.start_at", "tomorrow"), ("synchro.start_at", 5),
    ("target.sysname", "bad name"), ("target.sysname", ""), ("target.sysname", "-x"),
    ("target.sysname", "x" * 64), ("target.sysname", 5), ("target.sysname", DELETE),
    ("target.database", "mysql://u@h/db"), ("target.database", 42), ("target.database", ""),
    ("target.database", DELETE),
    ("target.default_path", "relative/calls"), ("target.default_path", DELETE),
    ("target.default_watermark", 0), ("target.default_watermark", 101),
    ("target.default_watermark", "90%"),
    ("target.additional_paths", {"path": "/x"}),
    ("target.additional_paths[0].watermark", 101), ("target.additional_paths[1].watermark", 0),
    ("target.additional_paths[1].balance", 0), ("target.additional_paths[0].balance", -1),
    ("target.additional_paths[0].balance", "1"), ("target.additional_paths[0].priority", 1.5),
    ("target.additional_paths[0].priority", 1001), ("target.additional_paths[1].path", "data"),
    ("target.additional_paths[1].path", DELETE), ("target.additional_paths[0].colour", "red"),
    ("target.video_paths", "/screens"),
    ("target.video_paths.default_path", "screens"),
    ("target.video_paths.default_watermark", 200),
    ("target.video_paths.additional_paths[0].watermark", 0),
    ("sources", {"sysname": "x"}), ("sources[1]", "src2"),
    ("sources[1].mount_path", "mnt/b"), ("sources[1].mount_path", DELETE),
    ("sources[1].mount_path", None), ("sources[0].sysname", "a/b"), ("sources[0].enabled", "true"),
    ("sources[0].group", ""), ("sources[0].interval", "weekly"),
    ("sources[1].synchronize_already_synchronized", 1), ("sources[1].database", DELETE),
    ("sources[0].database", "rec1:5432"), ("sources[0].require_mount", "yes"),
    ("sources[0].copy_files", "no"), ("sources[0].only_mixed", 2),
    ("sources[1].synchronize_audio", "x"), ("sources[1].synchronize_video", "x"),
    ("sources[1].synchronize_screens_recd", "x"), ("sources[1].synchronize_index_files", "x"),
    ("monitor.enabled", "on"), ("monitor.listen", "localhost"), ("monitor.listen", "host:0"),
    ("monitor.listen", "host:70000"), ("monitor.listen", ":9218"), ("monitor.listen", 9218),
    ("monitor.jwt_secret_file", "jwt.secret"), ("monitor.token_ttl", 10),
    ("monitor.users[0].password_hash", ""), ("monitor.users[0].name", "a b"),
    ("monitor.users[0].password_hash", DELETE), ("monitor.users[0].password_hash", "x"),
    ("monitor.users[0].password_hash", "$6$salt$crypt"), ("monitor.history_days", 0),
    ("logging.level", "verbose"), ("logging.format", "xml"),
]


@pytest.mark.parametrize("keypath,value", BAD, ids=[f"{k}={v!r}"[:60] for k, v in BAD])
def test_bad_value_names_its_key_path(keypath, value):
    if keypath.startswith("target.video_paths."):
        raw = with_value(base(), "target.video_paths",
                         {"default_path": "/screens", "additional_paths": [{"path": "/s2"}]})
    else:
        raw = base()
    err = error(with_value(raw, keypath, value))
    assert err.path == keypath
    assert str(err).startswith(keypath + ": ")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_balance_refused(value):
    err = error(with_value(base(), "target.additional_paths[0].balance", value))
    assert err.path == "target.additional_paths[0].balance"


def test_required_sections():
    for key in ("synchro", "target"):
        err = error(with_value(base(), key, DELETE))
        assert (err.path, err.message) == (key, "is required")


def test_required_key_message():
    err = error(with_value(base(), "sources[1].mount_path", DELETE))
    assert str(err) == "sources[1].mount_path: is required"


@pytest.mark.parametrize("keypath", ["bogus", "synchro.sleep_periods", "target.video",
                                     "target.additional_paths[1].prio", "sources[1].mountpath",
                                     "monitor.users[0].role", "logging.file", "monitor.port"])
def test_unknown_keys_are_errors_with_their_path(keypath):
    err = error(with_value(base(), keypath, 1))
    assert (err.path, err.message) == (keypath, "unknown key")


def test_non_mapping_root():
    assert error(["synchro"]).message == "must be a mapping"
    assert error("text").message == "must be a mapping"


# --- cross-field rules ---------------------------------------------------------------------------

def test_duplicate_source_sysname():
    err = error(with_value(base(), "sources[1].sysname", "src1"))
    assert err.path == "sources[1].sysname" and "sources[0].sysname" in err.message


def test_source_named_like_target():
    err = error(with_value(base(), "sources[0].sysname", "replay"))
    assert err.path == "sources[0].sysname" and "target.sysname" in err.message


def test_custom_interval_days_required_with_custom():
    err = error(with_value(base(), "sources[1].interval", "custom"))
    assert err.path == "sources[1].custom_interval_days" and "required" in err.message
    raw = with_value(with_value(base(), "sources[1].interval", "custom"), "sources[1].custom_interval_days", 14)
    assert from_dict(raw).sources[1].custom_interval_days == 14


@pytest.mark.parametrize("interval", ["yesterday", "last_week", "last_month", "all"])
def test_custom_interval_days_refused_otherwise(interval):
    raw = with_value(with_value(base(), "sources[0].interval", interval), "sources[0].custom_interval_days", 3)
    err = error(raw)
    assert err.path == "sources[0].custom_interval_days" and "only allowed" in err.message


@pytest.mark.parametrize("days", [0, -1, 36501, "7"])
def test_custom_interval_days_range(days):
    raw = with_value(with_value(base(), "sources[0].interval", "custom"), "sources[0].custom_interval_days", days)
    assert error(raw).path == "sources[0].custom_interval_days"


@pytest.mark.parametrize("mount", ["/", "//", "/mnt/.."])
def test_mount_path_root_refused(mount):
    assert error(with_value(base(), "sources[0].mount_path", mount)).path == "sources[0].mount_path"


def test_duplicate_target_paths():
    err = error(with_value(base(), "target.additional_paths[1].path", "/opt/callrec/data/calls/"))
    assert err.path == "target.additional_paths[1].path" and "target.default_path" in err.message
    err = error(with_value(base(), "target.additional_paths[1].path", "/data2/calls"))
    assert err.path == "target.additional_paths[1].path"


# --- extra_file_types ----------------------------------------------------------------------------

def test_extra_file_types_kept_in_order_as_a_tuple():
    raw = with_value(base(), "sources[1].extra_file_types", ["PVSTREAM", "PVMAG", "PVIDEO", "X1_2", "ABCDEFGH"])
    cfg = from_dict(raw)
    assert cfg.sources[1].extra_file_types == ("PVSTREAM", "PVMAG", "PVIDEO", "X1_2", "ABCDEFGH")
    assert cfg.sources[0].extra_file_types == ()
    assert from_dict(with_value(base(), "sources[0].extra_file_types", None)).sources[0].extra_file_types == ()
    assert from_dict(with_value(base(), "sources[0].extra_file_types", [])).sources[0].extra_file_types == ()


@pytest.mark.parametrize("cftype,switch", [
    ("AUDIO", "synchronize_audio"), ("ARCHIVE", "synchronize_audio"), ("MAG", "synchronize_audio"),
    ("MAG", "only_processed"), ("VIDEO", "synchronize_video"), ("IMAGE", "synchronize_video"),
    ("RECD", "synchronize_screens_recd"), ("INDEX", "synchronize_index_files"),
])
def test_extra_file_types_refuses_a_type_a_switch_governs(cftype, switch):
    err = error(with_value(base(), "sources[1].extra_file_types", ["PVMAG", cftype]))
    assert err.path == "sources[1].extra_file_types[1]"
    assert switch in err.message and cftype in err.message


@pytest.mark.parametrize("cftype", ["pvmag", "Pvmag", "9ABC", "_ABC", "ABCDEFGHI", "", "PV-MAG", "PV MAG",
                                    5, None, True, ["PVMAG"]])
def test_extra_file_types_item_must_be_a_cftype(cftype):
    err = error(with_value(base(), "sources[0].extra_file_types", [cftype]))
    assert err.path == "sources[0].extra_file_types[0]"


def test_extra_file_types_listed_twice():
    err = error(with_value(base(), "sources[0].extra_file_types", ["PVMAG", "PVIDEO", "PVMAG"]))
    assert err.path == "sources[0].extra_file_types[2]"
    assert "twice" in err.message and "sources[0].extra_file_types[0]" in err.message


@pytest.mark.parametrize("value", ["PVMAG", {"PVMAG": True}, 1])
def test_extra_file_types_must_be_a_list(value):
    assert error(with_value(base(), "sources[0].extra_file_types", value)).path == "sources[0].extra_file_types"


# --- text_encoding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("given,canonical", [
    ("latin1", "iso8859-1"), ("Latin-1", "iso8859-1"), ("cp1250", "cp1250"), ("CP1252", "cp1252"),
    ("iso8859-2", "iso8859-2"), ("ISO-8859-2", "iso8859-2"), ("koi8-r", "koi8-r"), ("utf8", "utf-8"),
    ("ascii", "ascii"), ("shift_jis", "shift_jis"), ("gbk", "gbk"),
])
def test_text_encoding_normalised_to_the_codec_name(given, canonical):
    cfg = from_dict(with_value(base(), "sources[1].text_encoding", given))
    assert cfg.sources[1].text_encoding == canonical and cfg.sources[0].text_encoding is None


def test_text_encoding_null_is_none():
    assert from_dict(with_value(base(), "sources[0].text_encoding", None)).sources[0].text_encoding is None


@pytest.mark.parametrize("codec", ["no-such-codec", "latin-99", "mbcs"])
def test_text_encoding_unknown_codec(codec):
    err = error(with_value(base(), "sources[1].text_encoding", codec))
    assert err.path == "sources[1].text_encoding" and codec in err.message


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-8-sig",
                                   "utf-7", "cp037", "cp500", "hz", "iso2022_jp", "unicode_escape",
                                   "raw_unicode_escape", "punycode", "idna", "base64", "rot13", "hex",
                                   "zlib", "undefined"])
def test_text_encoding_must_be_ascii_compatible(codec):
    err = error(with_value(base(), "sources[1].text_encoding", codec))
    assert err.path == "sources[1].text_encoding" and "ASCII-compatible" in err.message


@pytest.mark.parametrize("value", ["", 5, True, ["latin1"], {"name": "latin1"}])
def test_text_encoding_must_be_a_name(value):
    assert error(with_value(base(), "sources[0].text_encoding", value)).path == "sources[0].text_encoding"


# --- a recorder's mount and the target paths --------------------------------------------------------

VIDEO = {"default_path": "/opt/callrec/data/screens", "additional_paths": [{"path": "/video2"}]}


def test_mount_containing_a_target_path_message():
    raw = with_value(base(), "target.additional_paths[0].path", "/srv/rec2/replay")
    err = error(with_value(raw, "sources[1].mount_path", "/srv/rec2"))
    assert str(err) == ("sources[1].mount_path: /srv/rec2 contains target.additional_paths[0].path "
                        "(/srv/rec2/replay): a recorder's mount and a target path must not contain "
                        "one another")


@pytest.mark.parametrize("mount,key,relation,other", [
    ("/opt/callrec", "target.default_path", "contains", "/opt/callrec/data/calls"),
    ("/opt/callrec/data/calls/rec1", "target.default_path", "is inside", "/opt/callrec/data/calls"),
    ("/opt/callrec/data/calls/", "target.default_path", "is the same directory as", "/opt/callrec/data/calls"),
    ("/data2", "target.additional_paths[0].path", "contains", "/data2/calls"),
    ("/data3/calls/x/..", "target.additional_paths[1].path", "is the same directory as", "/data3/calls"),
    ("/data3/calls/2024", "target.additional_paths[1].path", "is inside", "/data3/calls"),
    ("/opt/callrec/data/screens/a", "target.video_paths.default_path", "is inside", "/opt/callrec/data/screens"),
    ("/opt/callrec/data/screens", "target.video_paths.default_path", "is the same directory as",
     "/opt/callrec/data/screens"),
    ("//video2", "target.video_paths.additional_paths[0].path", "is the same directory as", "/video2"),
    ("/video2/rec", "target.video_paths.additional_paths[0].path", "is inside", "/video2"),
])
def test_mount_and_target_path_must_not_contain_one_another(mount, key, relation, other):
    raw = with_value(with_value(base(), "target.video_paths", VIDEO), "sources[1].mount_path", mount)
    err = error(raw)
    assert err.path == "sources[1].mount_path"
    assert f" {relation} {key} ({other}): " in err.message
    assert "must not contain one another" in err.message


@pytest.mark.parametrize("copy_files,enabled", [(True, True), (False, True), (False, False)])
def test_containment_refused_whatever_the_source_does(copy_files, enabled):
    raw = with_value(base(), "sources[0].mount_path", "/data2/calls/rec1")
    raw = with_value(with_value(raw, "sources[0].copy_files", copy_files), "sources[0].enabled", enabled)
    assert error(raw).path == "sources[0].mount_path"


def test_target_root_contains_every_mount():
    err = error(with_value(base(), "target.additional_paths[1].path", "/"))
    assert err.path == "sources[0].mount_path" and "is inside target.additional_paths[1].path (/)" in err.message


@pytest.mark.parametrize("mount", ["/data", "/data2/callsx", "/data2/call", "/opt/callrec/data/calls2",
                                   "/opt/callrec/data/screens2", "/video", "/video22", "/mnt/data2/calls"])
def test_prefix_on_a_path_boundary_only(mount):
    raw = with_value(with_value(base(), "target.video_paths", VIDEO), "sources[0].mount_path", mount)
    assert from_dict(raw).sources[0].mount_path == mount


def test_video_path_only_checked_when_set():
    raw = with_value(base(), "sources[0].mount_path", "/opt/callrec/data/screens")
    assert from_dict(raw).sources[0].mount_path == "/opt/callrec/data/screens"


# --- environment variables in DSNs -------------------------------------------------------------------

def test_env_var_expanded_in_dsn(monkeypatch):
    monkeypatch.setenv("SYNCHROD_T_PW", "s3cr:et")
    monkeypatch.setenv("SYNCHROD_T_HOST", "rec9")
    raw = with_value(base(), "sources[1].database", "postgresql://u:${SYNCHROD_T_PW}@${SYNCHROD_T_HOST}/db")
    raw = with_value(raw, "target.database", "${SYNCHROD_T_HOST_DSN}")
    monkeypatch.setenv("SYNCHROD_T_HOST_DSN", "postgres://replay/callrec")
    cfg = from_dict(raw)
    assert cfg.sources[1].database == "postgresql://u:s3cr:et@rec9/db"
    assert cfg.target.database == "postgres://replay/callrec"


def test_missing_env_var_names_key(monkeypatch):
    monkeypatch.delenv("SYNCHROD_T_MISSING", raising=False)
    err = error(with_value(base(), "sources[1].database", "postgresql://u:${SYNCHROD_T_MISSING}@h/db"))
    assert err.path == "sources[1].database" and "SYNCHROD_T_MISSING" in err.message


def test_dsn_errors_do_not_echo_passwords():
    err = error(with_value(base(), "target.database", "mysql://u:hunter2@h/db"))
    assert err.path == "target.database" and "hunter2" not in str(err)


# --- every error at once ------------------------------------------------------------------------

THREE_ERRORS = """\
synchro:
  sleep_period: 0
target:
  sysname: replay
  database: "postgresql://callrec@replay/callrec"
  default_path: /opt/callrec/data/calls
  colour: red
sources:
  - {sysname: src1, database: "postgresql://callrec@rec1/callrec", mount_path: /mnt/a}
  - {sysname: src2, database: "postgresql://callrec@rec2/callrec", mount_path: mnt/b}
"""


def test_every_error_listed_in_file_order(tmp_path):
    err = pytest.raises(ConfigError, load, write(tmp_path, THREE_ERRORS)).value
    assert [e.path for e in err.errors] == ["synchro.sleep_period", "target.colour", "sources[1].mount_path"]
    assert [e.message for e in err.errors] == ["must be at least 1, not 0", "unknown key",
                                               "must be an absolute path, not 'mnt/b'"]
    assert (err.path, err.message) == ("synchro.sleep_period", "must be at least 1, not 0")
    assert str(err) == ("synchro.sleep_period: must be at least 1, not 0; target.colour: unknown key; "
                        "sources[1].mount_path: must be an absolute path, not 'mnt/b'")
    assert all(e.errors == [e] for e in err.errors)


def test_errors_follow_the_order_of_keys_in_the_file_then_missing_keys():
    raw = {"target": {"bogus": 1, "sysname": "bad name", "database": "postgresql://r/db"},
           "synchro": {"sleep_period": "x", "enabled": "yes"}}
    assert [e.path for e in error(raw).errors] == [
        "target.bogus", "target.sysname", "target.default_path", "synchro.sleep_period",
        "synchro.enabled"]
    assert [(e.path, e.message) for e in error({"logging": {"level": 1}}).errors] == [
        ("logging.level", "must be one of debug, info, warning, error, not 1"),
        ("synchro", "is required"), ("target", "is required")]


def test_every_item_of_a_list_checked():
    raw = with_value(base(), "sources[0].extra_file_types", ["pvmag", "AUDIO", "PVMAG", "PVMAG", 5, "PVMAG"])
    raw = with_value(raw, "target.additional_paths", [{"path": "x"}, {"path": "/d", "balance": 0}, {}])
    assert [(e.path, e.message.split(":")[0].split(" (")[0]) for e in error(raw).errors] == [
        ("target.additional_paths[0].path", "must be an absolute path, not 'x'"),
        ("target.additional_paths[1].balance", "must be greater than 0, not 0"),
        ("target.additional_paths[2].path", "is required"),
        ("sources[0].extra_file_types[0]", "must be a cftype"),
        ("sources[0].extra_file_types[1]", "AUDIO is governed by synchronize_audio, not by extra_file_types"),
        ("sources[0].extra_file_types[4]", "must be a cftype"),
        ("sources[0].extra_file_types[3]", "'PVMAG' is listed twice"),
        ("sources[0].extra_file_types[5]", "'PVMAG' is listed twice"),
    ]


def test_field_errors_then_every_cross_field_rule_error():
    raw = with_value(base(), "sources[1].interval", "custom")                # rule
    raw = with_value(raw, "synchro.sleep_period", 86401)                     # field
    raw = with_value(raw, "sources[1].sysname", "src1")                      # rule
    raw = with_value(raw, "target.additional_paths[1].path", "/data2/calls")  # rule
    raw = with_value(raw, "sources[0].mount_path", "/data2")                 # rule
    raw = with_value(raw, "monitor.users", [{"name": "a", "password_hash": "x"},
                                            {"name": "a", "password_hash": HASH}])  # rules
    raw = with_value(raw, "logging.format", "xml")                           # field
    err = error(raw)
    assert [e.path for e in err.errors] == [
        "synchro.sleep_period", "logging.format",
        "sources[0].mount_path", "sources[0].mount_path",
        "sources[1].sysname", "sources[1].custom_interval_days",
        "target.additional_paths[1].path",
        "monitor.users[0].password_hash", "monitor.users[1].name"]
    assert "contains target.additional_paths[0].path (/data2/calls)" in err.errors[2].message
    assert "contains target.additional_paths[1].path (/data2/calls)" in err.errors[3].message
    assert err.errors[6].message == "duplicates target.additional_paths[0].path"


def test_rules_skip_what_depends_on_a_failed_value():
    # the failed values are reported once; what depends on them is not judged
    raw = with_value(base(), "target.additional_paths[1].path", "/")        # contains every mount
    raw = with_value(raw, "sources[0].mount_path", "relative")
    raw = with_value(raw, "sources[1].sysname", "bad name")
    raw = with_value(raw, "sources[1].interval", "weekly")
    raw = with_value(raw, "sources[1].custom_interval_days", 3)
    raw = with_value(raw, "target.sysname", 5)
    raw = with_value(raw, "monitor.users[0].password_hash", "")
    assert [e.path for e in error(raw).errors] == [
        "target.sysname", "sources[0].mount_path", "sources[1].sysname", "sources[1].interval",
        "monitor.users[0].password_hash", "sources[1].mount_path"]
    for keypath, value in [("sources[1]", "src2"), ("sources", "all"), ("target", "replay"),
                           ("target.video_paths", "/v"), ("target.additional_paths", "/x"),
                           ("target.additional_paths[0]", 1), ("monitor", ["x"]),
                           ("monitor.users", "admin"), ("monitor.users[0]", "admin"),
                           ("monitor.enabled", "on")]:
        raw = with_value(with_value(base(), "monitor.listen", "0.0.0.0:1"), keypath, value)
        assert [e.path for e in error(raw).errors] == [keypath]
    # users that failed their check may be the login that a wide listen needs
    raw = with_value(with_value(base(), "monitor.listen", "0.0.0.0:1"), "monitor.users", "admin")
    assert [e.path for e in error(raw).errors] == ["monitor.users"]


def test_config_error_api():
    one = ConfigError("a.b", "is wrong")
    assert (one.path, one.message, str(one), one.errors) == ("a.b", "is wrong", "a.b: is wrong", [one])
    assert str(ConfigError("", "file is empty")) == "file is empty"
    assert ConfigError.of([one]) is one
    two, three = ConfigError("", "whole file"), ConfigError("c", "also")
    agg = ConfigError.of([one, ConfigError.of([two, three])])
    assert isinstance(agg, ConfigError) and agg.errors == [one, two, three]
    assert (agg.path, agg.message) == ("a.b", "is wrong")
    assert str(agg) == "a.b: is wrong; whole file; c: also"
    with pytest.raises(ValueError):
        ConfigError.of([])


def test_config_target_paths_each_once_sorted():
    raw = with_value(base(), "target.video_paths", {"default_path": "/data3/calls", "additional_paths": [
        {"path": "/aaa/video"}, {"path": "/opt/callrec/data/calls"}, {"path": "/zzz"}]})
    cfg = from_dict(raw)
    assert cfg.target_paths() == ("/aaa/video", "/data2/calls", "/data3/calls", "/opt/callrec/data/calls",
                                  "/zzz")
    assert from_dict(base()).target_paths() == ("/data2/calls", "/data3/calls", "/opt/callrec/data/calls")


def test_yaml_errors_stay_single(tmp_path):
    for text in ("synchro: [\n", "a: 1\na: 2\n", ""):
        err = pytest.raises(ConfigError, load, write(tmp_path, text)).value
        assert err.errors == [err] and err.path == ""


# --- files ------------------------------------------------------------------------------------------

def write(tmp_path, text: str) -> str:
    p = tmp_path / "synchrod.yaml"
    p.write_text(text)
    return str(p)


def test_load_file(tmp_path):
    path = write(tmp_path, yaml.safe_dump(base()))
    cfg = load(path)
    assert cfg.path == path and cfg.target.sysname == "replay"


def test_load_missing_file(tmp_path):
    err = pytest.raises(ConfigError, load, str(tmp_path / "nope.yaml")).value
    assert err.path == "" and "does not exist" in err.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_load_empty_file(tmp_path, text):
    assert "is empty" in pytest.raises(ConfigError, load, write(tmp_path, text)).value.message


def test_load_yaml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, "synchro:\n  sleep_period: 10\ntarget: [unclosed\n")
    err = pytest.raises(ConfigError, load, path).value
    assert "not valid YAML" in err.message and "line 4" in err.message


def test_load_yaml_tab_indentation_error(tmp_path):
    err = pytest.raises(ConfigError, load, write(tmp_path, "synchro:\n\tsleep_period: 10\n")).value
    assert "not valid YAML at line 2" in err.message


def test_load_yaml_native_timestamp(tmp_path):
    raw = with_value(base(), "synchro.start_at", dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc))
    assert load(write(tmp_path, yaml.safe_dump(raw))).synchro.start_at == \
        dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


# --- a key given twice ---------------------------------------------------------------------------

def test_duplicate_key_names_file_key_and_both_lines(tmp_path):
    path = write(tmp_path, "synchro:\n"
                           "  enabled: true\n"
                           "  sleep_period: 10\n"
                           "  calls_per_period: 5\n"
                           "  only_finished: true\n"
                           "  only_processed: true\n"
                           "  sleep_period: 20\n")
    err = pytest.raises(ConfigError, load, path).value
    assert err.path == ""
    assert str(err) == err.message == f"{path}: line 7: key 'sleep_period' is given twice (first at line 3)"


def test_duplicate_section_and_nested_keys(tmp_path):
    text = yaml.safe_dump(base(), sort_keys=False)
    err = pytest.raises(ConfigError, load, write(tmp_path, text + "synchro:\n  sleep_period: 5\n")).value
    assert "key 'synchro' is given twice (first at line 1)" in err.message
    lines = text.splitlines()
    at = lines.index("- sysname: src2")   # 0-based: the line after is the item's 2nd key
    lines.insert(at + 2, "  sysname: src3")
    err = pytest.raises(ConfigError, load, write(tmp_path, "\n".join(lines) + "\n")).value
    assert f"line {at + 3}: key 'sysname' is given twice (first at line {at + 1})" in err.message


def test_duplicate_key_in_a_flow_mapping(tmp_path):
    raw = base()
    del raw["target"]["additional_paths"]
    path = write(tmp_path, yaml.safe_dump(raw) + "  additional_paths: [{path: /d2, priority: 1, path: /d3}]\n")
    err = pytest.raises(ConfigError, load, path).value
    assert "key 'path' is given twice" in err.message


def test_keys_that_yaml_reads_as_one_value_are_duplicates(tmp_path):
    # 1 and 0x1 are the same integer; PyYAML would keep only one of them
    err = pytest.raises(ConfigError, load, write(tmp_path, "synchro: {sleep_period: 10}\n1: a\n0x1: b\n")).value
    assert "line 3: key 1 is given twice (first at line 2)" in err.message


def test_merge_keys_still_work(tmp_path):
    text = """\
synchro: {sleep_period: 10}
target: {sysname: replay, database: "postgresql://r/db", default_path: /opt/calls}
sources:
  - <<: &common {database: "postgresql://rec/db", interval: all, group: g}
    sysname: src1
    mount_path: /mnt/a
  - <<: &second {<<: *common, sysname: src2, group: h, mount_path: /mnt/b}
    group: i
  - <<: [*common, *second]
    sysname: src3
    mount_path: /mnt/c
"""
    path = write(tmp_path, text)
    cfg = load(path)
    assert [(s.sysname, s.group, s.interval, s.mount_path) for s in cfg.sources[:2]] == [
        ("src1", "g", "all", "/mnt/a"), ("src2", "i", "all", "/mnt/b")]
    assert cfg == from_dict(yaml.safe_load(text), path)   # PyYAML's own merge semantics


def test_an_anchor_first_used_in_a_merge_then_aliased(tmp_path):
    # the anchored mapping is flattened by the merge before it is built on its own:
    # its merged keys must not then look like duplicates
    text = """\
synchro: {sleep_period: 10}
target: {sysname: replay, database: "postgresql://r/db", default_path: /opt/calls}
sources:
  - <<: &s {<<: {database: "postgresql://rec/db", sysname: x}, sysname: src1, mount_path: /mnt/a}
    interval: all
  - *s
"""
    err = pytest.raises(ConfigError, load, write(tmp_path, text)).value
    assert (err.path, err.message) == ("sources[1].sysname", "'src1' is already used by sources[0].sysname")


def test_load_target_dsn(tmp_path):
    assert load_target_dsn(write(tmp_path, yaml.safe_dump(base()))) == "postgresql://callrec@replay/callrec"
    # invalid elsewhere: still found
    raw = with_value(base(), "sources[1].mount_path", "relative")
    assert load_target_dsn(write(tmp_path, yaml.safe_dump(raw))) == "postgresql://callrec@replay/callrec"
    text = "x: &a {k: 1}\ny: {<<: *a, k: 2}\ntarget: {database: \"postgresql://r/db\"}\n"
    assert load_target_dsn(write(tmp_path, text)) == "postgresql://r/db"
    # a key given twice makes the file invalid, yet `status` still finds the replay
    # database (read as YAML loaders do: the last one)
    text = "synchro: {sleep_period: 1}\nsynchro: {sleep_period: 2}\ntarget: {database: \"postgresql://r/db\"}\n"
    path = write(tmp_path, text)
    assert "is given twice" in pytest.raises(ConfigError, load, path).value.message
    assert load_target_dsn(path) == "postgresql://r/db"


def test_resolve_path(monkeypatch):
    monkeypatch.delenv("SYNCHROD_CONFIG", raising=False)
    assert resolve_path(None) == DEFAULT_PATH == "/etc/synchrod/synchrod.yaml"
    monkeypatch.setenv("SYNCHROD_CONFIG", "/x/y.yaml")
    assert resolve_path(None) == "/x/y.yaml"
    assert resolve_path("/cli.yaml") == "/cli.yaml"


def test_example_config_loads(monkeypatch):
    example = REPO / "etc" / "synchrod.yaml"
    if not example.exists():
        pytest.skip("etc/synchrod.yaml not written yet")
    for var in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", example.read_text()):
        monkeypatch.setenv(var, "example")
    cfg = load(str(example))
    assert cfg.target.sysname and cfg.synchro.sleep_period >= 1


# --- command line -----------------------------------------------------------------------------------

def run_check(path: str, env_config: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SYNCHROD_CONFIG"}
    args = [sys.executable, "-m", "synchrod", "check"]
    if env_config:
        env["SYNCHROD_CONFIG"] = path
    else:
        args += ["-c", path]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("keypath,value", [
    ("sources[1].mount_path", "relative"),
    ("target.additional_paths[0].watermark", 150),
    ("sources[0].unknown_key", True),
    ("synchro.sleep_period", DELETE),
])
def test_cli_check_exits_78_naming_the_key(tmp_path, keypath, value):
    proc = run_check(write(tmp_path, yaml.safe_dump(with_value(base(), keypath, value))))
    assert proc.returncode == 78
    assert f"{keypath}: " in proc.stderr
    assert proc.stdout == ""


def test_cli_check_via_env_and_missing_and_bad_yaml(tmp_path):
    proc = run_check(write(tmp_path, yaml.safe_dump(with_value(base(), "logging.format", "xml"))),
                     env_config=True)
    assert proc.returncode == 78 and "logging.format: " in proc.stderr
    proc = run_check(str(tmp_path / "missing.yaml"))
    assert proc.returncode == 78 and "does not exist" in proc.stderr
    proc = run_check(write(tmp_path, "synchro: [\n"))
    assert proc.returncode == 78 and "not valid YAML" in proc.stderr


def test_cli_check_exits_78_on_a_key_given_twice(tmp_path):
    path = write(tmp_path, yaml.safe_dump(base()) + "synchro:\n  sleep_period: 5\n")
    proc = run_check(path)
    assert proc.returncode == 78, proc.stderr
    assert f"{path}: line " in proc.stderr and "key 'synchro' is given twice (first at line " in proc.stderr
    assert proc.stdout == ""


def test_cli_check_exits_78_when_a_mount_contains_a_target_path(tmp_path):
    raw = with_value(base(), "sources[1].mount_path", "/data2")
    proc = run_check(write(tmp_path, yaml.safe_dump(raw)))
    assert proc.returncode == 78, proc.stderr
    assert ("sources[1].mount_path: /data2 contains target.additional_paths[0].path (/data2/calls)"
            in proc.stderr)
    assert proc.stdout == ""


@pytest.mark.parametrize("keypath,value", [
    ("sources[0].extra_file_types", ["PVMAG", "AUDIO"]),
    ("sources[1].text_encoding", "utf-16"),
])
def test_cli_check_exits_78_on_the_new_source_keys(tmp_path, keypath, value):
    proc = run_check(write(tmp_path, yaml.safe_dump(with_value(base(), keypath, value))))
    assert proc.returncode == 78 and f"{keypath}" in proc.stderr and proc.stdout == ""


def test_cli_prints_one_line_per_error(tmp_path):
    text = THREE_ERRORS.replace("mount_path: /mnt/a}", "mount_path: /mnt/a, interval: custom}")
    proc = run_check(write(tmp_path, text))
    assert proc.returncode == 78, proc.stderr
    assert proc.stderr.splitlines() == [
        "synchrod: configuration error: synchro.sleep_period: must be at least 1, not 0",
        "synchrod: configuration error: target.colour: unknown key",
        "synchrod: configuration error: sources[1].mount_path: must be an absolute path, not 'mnt/b'",
        "synchrod: configuration error: sources[0].custom_interval_days: is required when interval is custom",
    ]
    assert proc.stdout == ""


def test_cli_main_prints_each_error(tmp_path, capsys):
    from synchrod.cli.main import main
    raw = with_value(with_value(base(), "logging.format", "xml"), "sources[0].sysname", "src2")
    assert main(["check", "-c", write(tmp_path, yaml.safe_dump(raw, sort_keys=False))]) == 78
    out = capsys.readouterr()
    assert out.err.splitlines() == [
        "synchrod: configuration error: logging.format: must be one of json, console, not 'xml'",
        "synchrod: configuration error: sources[1].sysname: 'src2' is already used by sources[0].sysname",
    ]
    assert out.out == ""


def test_distinct_target_paths_in_file_order_audio_first():
    raw = with_value(base(), "target.video_paths", {"default_path": "/data3/calls", "additional_paths": [
        {"path": "/aaa/video", "watermark": 50}, {"path": "/opt/callrec/data/calls", "watermark": 40}]})
    paths = from_dict(raw).target.distinct_paths()
    assert [(kind, p.path) for kind, p in paths] == [
        ("audio", "/opt/callrec/data/calls"), ("audio", "/data2/calls"), ("audio", "/data3/calls"),
        ("video", "/aaa/video")]
    # a path both lists name is the audio one, with its own watermark
    assert paths[0][1].watermark == from_dict(base()).target.audio_paths[0].watermark
    assert [kind for kind, _ in from_dict(base()).target.distinct_paths()] == ["audio"] * 3


def test_storage_defaults_are_specs():
    st = from_dict(base()).storage
    assert not st.enabled and st.mode == "retention_priority" and st.check_interval == 30
    assert [(b.enter, b.exit) for b in (st.thresholds.warning, st.thresholds.critical,
                                        st.thresholds.emergency)] == [(75, 70), (90, 87), (99, 97)]
    assert st.subscribers == ()
    raw = with_value(base(), "storage", {"enabled": True, "levels": {"critical": {"enter": 92}},
                                         "subscribers": ["http://127.0.0.1:8080/events"]})
    st = from_dict(raw).storage
    assert st.enabled and (st.thresholds.critical.enter, st.thresholds.critical.exit) == (92, 87)
    assert st.subscribers == ("http://127.0.0.1:8080/events",)
    # a level's own default exit is kept: entering below it is refused
    raw = with_value(base(), "storage.levels", {"critical": {"enter": 85}})
    assert error(raw).path == "storage.levels.critical.exit"


def test_storage_levels_every_error_at_once():
    raw = with_value(base(), "storage.levels", {"warning": {"enter": 80, "exit": 85},
                                                "critical": {"enter": 80, "exit": 79},
                                                "emergency": {"enter": 101}})
    with pytest.raises(ConfigError) as info:
        from_dict(raw)
    paths = [e.path for e in info.value.errors]
    assert paths == ["storage.levels.emergency.enter",       # the field's own check first
                     "storage.levels.warning.exit",           # enter > exit
                     "storage.levels.critical.enter",         # above warning's
                     "storage.levels.critical.exit"], paths


def test_storage_mode_and_subscribers():
    st = from_dict(with_value(base(), "storage.mode", "recording_priority")).storage
    assert st.mode == "recording_priority" and st.prune_after_days == 60
    assert not st.prune_metadata and st.max_prune_calls == 10000
    assert error(with_value(base(), "storage.prune_after_days", 0)).path == "storage.prune_after_days"
    assert error(with_value(base(), "storage.mode", "fast")).path == "storage.mode"
    assert error(with_value(base(), "storage.subscribers", ["ftp://x/y"])).path == "storage.subscribers[0]"
    assert error(with_value(base(), "storage.subscribers",
                            ["http://a/e", "http://a/e"])).path == "storage.subscribers[1]"
    assert error(with_value(base(), "storage.check_interval", 0)).path == "storage.check_interval"
