from conftest import call


def test_basic_sync(env):
    env.add_calls(0, [call("a1"), call("a2", files=2)])
    env.add_calls(1, [call("a1", files=2), call("b1")])
    proc = env.once("--until-idle")
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0
    assert env.marks(0) == {"a1": "N", "a2": "S"}
    assert env.marks(1) == {"a1": "S", "b1": "S"}
    rows = env.target("SELECT sid, cfcnt FROM callrec.couples ORDER BY sid")
    assert rows == [("a1", 2), ("a2", 2), ("b1", 1)]
