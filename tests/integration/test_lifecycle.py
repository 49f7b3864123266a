"""A replica's health, readiness and shutdown, observed in real containers."""

import time

# Runs inside the replica, so a slow `docker exec` on a busy machine cannot miss the
# drain window: it sees /readyz answer, sends gunicorn (PID 1) the SIGTERM that
# `docker stop` would send, and prints every answer ("200", "503", or "down" once the
# socket is closed) every 50 ms until the server is gone.
SIGTERM_AND_WATCH_READYZ = """
import os, signal, time, urllib.error, urllib.request
def readyz():
    try:
        return str(urllib.request.urlopen("http://127.0.0.1:8000/readyz", timeout=2).status)
    except urllib.error.HTTPError as error:
        return str(error.code)
    except OSError:
        return "down"
print(readyz(), flush=True)
os.kill(1, signal.SIGTERM)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    answer = readyz()
    print(answer, flush=True)
    if answer == "down":
        break
    time.sleep(0.05)
"""


def test_every_container_is_healthy(stack):
    for container in stack.containers("app") + stack.containers("nginx"):
        assert container.attrs["State"]["Health"]["Status"] == "healthy", container.name


def test_readiness_turns_503_on_sigterm_before_shutdown(stack):
    replica = stack.containers("app")[0]
    restarts_before = replica.attrs["RestartCount"]
    answers = replica.exec_run(["python3", "-c", SIGTERM_AND_WATCH_READYZ]).output.split()
    answers = [answer.decode() for answer in answers]

    assert answers[0] == "200", answers
    assert "503" in answers, f"readiness never turned 503 before shutdown: {answers}"
    first_503 = answers.index("503")
    assert set(answers[:first_503]) == {"200"}, answers
    # Once draining it never reports ready again, and it keeps serving until it closes.
    assert set(answers[first_503:-1]) == {"503"}, answers
    assert answers[-1] == "down", answers

    # gunicorn exited by itself (not `docker kill`, which Docker counts as a stop by
    # hand), so the restart policy brings the replica back.
    deadline = time.monotonic() + 60
    while replica.attrs["RestartCount"] == restarts_before and time.monotonic() < deadline:
        time.sleep(0.5)
        replica.reload()
    assert replica.attrs["RestartCount"] == restarts_before + 1
    stack.wait_until_healthy()
