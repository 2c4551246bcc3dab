import pytest

from cloudlab.errors import CommandError, ServiceError
from cloudlab.proc import GiveUp, run, wait_for


def test_run_captures_output():
    assert run(["python3", "-c", "print('hi')"]).stdout == "hi\n"


def test_failed_command_carries_code_and_output():
    with pytest.raises(CommandError) as info:
        run(["python3", "-c", "import sys; print('out'); sys.exit('bad thing')"])
    err = info.value
    assert err.returncode == 1
    assert err.stdout == "out\n"
    assert "bad thing" in err.stderr and "bad thing" in str(err)


def test_missing_program_is_a_command_error():
    with pytest.raises(CommandError, match="no-such-program-xyz: command not found") as info:
        run(["no-such-program-xyz"])
    assert info.value.returncode == 127


def test_timeout_is_reported():
    with pytest.raises(CommandError, match="timed out"):
        run(["sleep", "5"], timeout=0.2)


def test_wait_for_shows_log_tail_on_timeout(tmp_path):
    log = tmp_path / "svc.log"
    log.write_text("starting\nlistening failed: address in use\n")
    with pytest.raises(ServiceError, match="address in use"):
        wait_for(lambda: False, timeout=0.3, what="svc", log=log)


def test_wait_for_gives_up_early(tmp_path):
    calls = []

    def probe():
        calls.append(1)
        raise GiveUp("process exited with code 3")

    with pytest.raises(ServiceError, match=r"^gave up waiting for svc: process exited with "
                                           r"code 3$"):
        wait_for(probe, timeout=5, what="svc")
    assert calls == [1], "GiveUp ends the wait at the first call"


def test_wait_for_returns_the_value():
    calls = iter([None, None, "ready"])
    assert wait_for(lambda: next(calls), timeout=5, what="x", interval=0.01) == "ready"
