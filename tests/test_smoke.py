from conftest import call


def test_basic_sync(env):
    env.add_calls(0, [call("a1"), call("a2", files=2)])
    env.add_calls(1, [call("a1", files=2), call("b1")])
    proc = env.once("--until-idle")
    assert proc.returncode == 0
    # the groups run concurrently: rec1's worse a1 is N if rec2 came first,
    # S if it came first and was replaced afterwards
    assert env.marks(0)["a2"] == "S" and env.marks(0)["a1"] in ("S", "N")
    assert env.marks(1) == {"a1": "S", "b1": "S"}
    rows = env.target("SELECT sid, cfcnt FROM callrec.couples ORDER BY sid")
    assert rows == [("a1", 2), ("a2", 2), ("b1", 1)]
