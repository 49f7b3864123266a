"""The monitoring profile against a stack of its own: the real Prometheus, its rules, its page."""

import re
import shutil
import time
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import pytest
import requests
import yaml
from conftest import ROOT, extra_stack, fault, free_port
from test_page import open_page
from waits import wait_for

from balance_check.sampling import send_requests

REPORT_TITLE = "Monitoring: the real Prometheus beside a stack of its own"
# Short intervals and a short `for:` through the settings start.sh renders, never an
# edit of the rules; three replicas expected (APP_REPLICAS), so that one stopped fires.
INTERVAL_SECONDS = 2
MONITORING = {
    "COMPOSE_PROFILES": "monitoring",
    "APP_REPLICAS": "3",
    "PROMETHEUS_INTERVAL": f"{INTERVAL_SECONDS}s",
    "ALERT_REPLICA_FOR": "5s",
}
CONSOLE = ROOT / "monitoring/consoles/gateway.html"
START_SH = "/etc/prometheus/gateway/start.sh"


def promtool_rule_tests(stack, monitoring_folder=ROOT / "monitoring"):
    """Run start.sh's `promtool test rules` in the stack's Prometheus image: (status, output)."""
    profiled = {**stack.env, "COMPOSE_PROFILES": "monitoring"}
    config = yaml.safe_load(replace(stack, env=profiled).compose("config").stdout)
    container = stack.docker.containers.run(
        config["services"]["prometheus"]["image"],
        entrypoint=["/bin/sh", START_SH],
        command=["test"],
        volumes={str(monitoring_folder): {"bind": "/etc/prometheus/gateway", "mode": "ro"}},
        user="65534:65534",
        read_only=True,
        tmpfs={"/tmp": ""},
        detach=True,
    )
    try:
        status = container.wait(timeout=120)["StatusCode"]
        return status, container.logs().decode()
    finally:
        container.remove(force=True)


def test_alert_rules_pass_their_promtool_tests(stack):
    status, output = promtool_rule_tests(stack)
    assert status == 0, output
    assert "SUCCESS" in output


def test_promtool_tests_fail_when_a_rule_changes(stack, tmp_path):
    # The unit tests hold the rules to their thresholds: a balance alert that waits for a
    # replica to fall below 10 % of its fair share (instead of 50 %) fails them.
    changed = tmp_path / "monitoring"
    shutil.copytree(ROOT / "monitoring", changed)
    rules = changed / "gateway.rules.yml"
    text = rules.read_text()
    assert "fair_share_ratio1m < 0.5" in text
    rules.write_text(text.replace("fair_share_ratio1m < 0.5", "fair_share_ratio1m < 0.1"))
    for folder in (tmp_path, changed):
        folder.chmod(0o755)  # Prometheus runs as nobody
    status, output = promtool_rule_tests(stack, changed)
    assert status != 0
    assert "GatewayReplicaOffBalance" in output


@pytest.fixture(scope="module")
def monitored(stack):
    """A three-replica stack with the monitoring profile; yields it and Prometheus' URL."""
    port = free_port()
    with extra_stack(stack, "mon", PROMETHEUS_PORT=str(port), **MONITORING) as extra:
        extra.compose("up", "-d", "--no-deps", "nginx-exporter", "prometheus")
        extra.wait_until_healthy()
        yield extra, f"http://127.0.0.1:{port}"


def promql(prometheus, expr):
    """An instant query's samples, as {frozenset(labels): value}."""
    answer = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    assert answer.status_code == 200, answer.text
    return {
        frozenset(sample["metric"].items()): float(sample["value"][1])
        for sample in answer.json()["data"]["result"]
    }


def by_label(samples, label):
    return {dict(labels)[label]: value for labels, value in samples.items()}


def replica_addresses(stack):
    """Each running replica's address:8000, as Docker's DNS gives it to Prometheus."""
    addresses = {}
    for container in stack.containers("app"):
        (network,) = container.attrs["NetworkSettings"]["Networks"].values()
        addresses[f"{network['IPAddress']}:8000"] = container
    return addresses


def scraped_replicas(prometheus):
    return set(by_label(promql(prometheus, 'up{job="gateway-replicas"} == 1'), "instance"))


def discovered_replicas(prometheus):
    """The replicas' addresses Prometheus has found in Docker's DNS, scraped yet or not."""
    answer = requests.get(f"{prometheus}/api/v1/targets", timeout=10)
    targets = answer.json()["data"]["activeTargets"]
    return {t["labels"]["instance"] for t in targets if t["labels"]["job"] == "gateway-replicas"}


def wait_until_targets_match_docker(stack, prometheus):
    """Wait until the scraped replicas are exactly the ones the Docker engine runs."""
    wait_for(
        lambda: scraped_replicas(prometheus) == set(replica_addresses(stack)),
        timeout=60,
        what="the targets are the running replicas",
    )


def firing(prometheus, alertname):
    return promql(prometheus, f'ALERTS{{alertname="{alertname}", alertstate="firing"}}')


def info_counted(prometheus):
    """/info answers counted by Prometheus, by the hostname of the replica that answered."""
    return by_label(
        promql(
            prometheus,
            'sum by (hostname) (gateway_http_requests_total{endpoint="/info", status="200"}'
            " * on (instance) group_left (hostname) gateway_replica_info)",
        ),
        "hostname",
    )


def test_prometheus_counts_every_request_of_every_running_replica(monitored, report):
    stack, prometheus = monitored
    wait_until_targets_match_docker(stack, prometheus)
    wait_for(
        lambda: promql(prometheus, 'nginx_up{job="nginx"} == 1'),
        timeout=60,
        what="nginx's stub_status read through the exporter",
    )
    # A few first, so that every replica's /info series exists before the measured ones:
    # rate() never sees the first value of a new series, and the shares would be skewed.
    samples = send_requests(f"{stack.url}/info", requests_total=30, concurrency=2)
    time.sleep(2 * INTERVAL_SECONDS)
    samples += send_requests(f"{stack.url}/info", requests_total=600, concurrency=4)
    answered = time.monotonic()
    assert [s.error for s in samples if s.error] == []
    served = Counter(sample.replica for sample in samples)
    # Counters are exact; only their arrival waits for a scrape.
    wait_for(lambda: info_counted(prometheus) == served, timeout=60, what="the counts arrive")
    arrived = time.monotonic() - answered
    counted = info_counted(prometheus)
    running = {c.attrs["Config"]["Hostname"] for c in stack.containers("app")}
    assert set(counted) == running
    report(
        f"requests sent {len(samples)}, counted by Prometheus {sum(counted.values()):.0f} "
        f"{arrived:.1f} s after the last answer (scrape interval {INTERVAL_SECONDS} s); "
        f"per replica {sorted(int(v) for v in counted.values())}"
    )

    # The recording rules give every running replica its share; they add up to 1.
    wait_for(
        lambda: (
            set(by_label(promql(prometheus, "instance:gateway_requests:share1m"), "instance"))
            == set(replica_addresses(stack))
        ),
        timeout=60,
        what="a share for every replica",
    )
    shares = by_label(promql(prometheus, "instance:gateway_requests:share1m"), "instance")
    assert sum(shares.values()) == pytest.approx(1)
    # Balanced as the balance alert judges it: each within half to twice its fair share.
    fair = by_label(promql(prometheus, "instance:gateway_requests:fair_share_ratio1m"), "instance")
    assert all(0.5 <= ratio <= 2 for ratio in fair.values()), fair
    report("shares per replica: " + ", ".join(f"{s:.0%}" for s in sorted(shares.values())))


def console_queries():
    """Every PromQL expression the console draws: literal ones and printf formats."""
    text = CONSOLE.read_text()
    literal = [q.replace('\\"', '"') for q in re.findall(r'query "((?:[^"\\]|\\.)*)"', text)]
    formats = re.findall(r'printf "([^"]*%q[^"]*)"', text)
    return literal, formats


def test_every_query_of_the_console_answers_and_it_shows_every_replica(monitored, tmp_path, report):
    stack, prometheus = monitored
    send_requests(f"{stack.url}/info", requests_total=200, concurrency=4)
    literal, formats = console_queries()
    assert len(literal) >= 8 and len(formats) >= 3, (literal, formats)
    instances = set(replica_addresses(stack))
    wait_for(
        lambda: (
            set(by_label(promql(prometheus, "instance:gateway_requests:rate1m"), "instance"))
            == instances
        ),
        timeout=60,
        what="rates for every replica",
    )
    for expr in literal:
        if expr != "ALERTS":  # none need be pending now; the query itself must parse
            assert promql(prometheus, expr), expr
    for expr_format in formats:
        for instance in instances:
            assert promql(prometheus, expr_format.replace("%q", f'"{instance}"')), expr_format

    page = requests.get(f"{prometheus}/consoles/gateway.html", timeout=10)
    assert page.status_code == 200, page.text
    hostnames = {c.attrs["Config"]["Hostname"] for c in stack.containers("app")}
    shown = set(re.findall(r"<td>([0-9a-f]{12})</td>", page.text))
    assert shown == hostnames
    dom = open_page(SimpleNamespace(url=prometheus), tmp_path, "monitoring-console.png",
                    path="/consoles/gateway.html", virtual_ms=2000)  # fmt: skip
    assert all(hostname in dom for hostname in hostnames)
    report(f"console: {len(literal)} queries and {len(formats)} per-replica ones answered")


def test_a_scaled_up_replica_becomes_a_target_and_a_removed_one_leaves(monitored, report):
    stack, prometheus = monitored
    before = set(replica_addresses(stack))
    stack.compose("up", "-d", "--no-deps", "--scale", "app=4", "app")
    scaled = time.monotonic()
    (added,) = set(replica_addresses(stack)) - before
    wait_for(lambda: added in discovered_replicas(prometheus), timeout=60, what="discovery")
    discovered = time.monotonic() - scaled
    wait_for(lambda: added in scraped_replicas(prometheus), timeout=60, what="the new target")
    scraped = time.monotonic() - scaled
    report(
        f"scaled 3 -> 4: the new replica was a target {discovered:.1f} s and scraped "
        f"{scraped:.1f} s after `up --scale` returned (its own start included; refresh and "
        f"scrape interval {INTERVAL_SECONDS} s each)"
    )
    stack.compose("up", "-d", "--no-deps", "--scale", "app=3", "app")
    scaled = time.monotonic()
    wait_until_targets_match_docker(stack, prometheus)
    report(f"scaled 4 -> 3: the targets matched Docker {time.monotonic() - scaled:.1f} s later")


def test_a_stopped_replica_fires_replica_down(monitored, report):
    stack, prometheus = monitored
    assert not firing(prometheus, "GatewayReplicaDown")
    stopped = stack.containers("app")[0]
    # Timed from the stop's start: a stopping replica stops answering before Docker's DNS
    # drops it, and either way it no longer counts.
    gone = time.monotonic()
    stopped.stop(timeout=10)
    try:
        wait_for(lambda: firing(prometheus, "GatewayReplicaDown"), timeout=90, what="the alert")
        fired = time.monotonic() - gone
        report(
            f"one of 3 replicas stopped: GatewayReplicaDown fired {fired:.1f} s after docker stop "
            f"(ALERT_REPLICA_FOR={MONITORING['ALERT_REPLICA_FOR']}, interval {INTERVAL_SECONDS} s)"
        )
    finally:
        stopped.start()
    wait_for(lambda: not firing(prometheus, "GatewayReplicaDown"), timeout=90, what="it resolves")
    report(
        f"replica started again: the alert resolved "
        f"{time.monotonic() - gone:.1f} s after the stop began"
    )


def test_a_paused_replica_fires_not_scraped(monitored, report):
    stack, prometheus = monitored
    wait_until_targets_match_docker(stack, prometheus)
    paused = stack.containers("app")[0]
    # Paused, it stays in Docker's DNS and so a target, but answers nothing.
    paused.pause()
    frozen = time.monotonic()
    try:
        wait_for(
            lambda: firing(prometheus, "GatewayReplicaNotScraped"), timeout=90, what="the alert"
        )
        (labels,) = firing(prometheus, "GatewayReplicaNotScraped")
        report(
            f"one replica paused: GatewayReplicaNotScraped fired for it "
            f"{time.monotonic() - frozen:.1f} s later"
        )
    finally:
        paused.unpause()
    assert dict(labels)["instance"] in replica_addresses(stack)
    assert replica_addresses(stack)[dict(labels)["instance"]].id == paused.id


def test_an_unavailable_replica_shows_as_retries(monitored, report):
    stack, prometheus = monitored
    wait_until_targets_match_docker(stack, prometheus)
    addresses = replica_addresses(stack)
    sick_address, sick = sorted(addresses.items())[0]
    retried = (
        f'gateway_http_requests_total{{endpoint="/info", status="503", instance="{sick_address}"}}'
    )
    fault(stack, sick, "set", "unavailable", "--for", "120s")
    try:
        # Steady traffic over several scrapes: rate() sees a counter's increments between
        # two scrapes, never the first value of a series that a first 503 created.
        samples = send_requests(
            f"{stack.url}/info", duration=8 * INTERVAL_SECONDS, concurrency=2, new_connections=True
        )
    finally:
        fault(stack, sick, "heal")
    # nginx retried every 503 on another replica: no client saw one.
    assert [s.error for s in samples if s.error] == []
    assert sick.attrs["Config"]["Hostname"] not in {s.replica for s in samples}
    wait_for(lambda: promql(prometheus, retried), timeout=60, what="the sick replica's 503s")
    answered_503 = sum(promql(prometheus, retried).values())
    wait_for(
        lambda: promql(prometheus, "instance:gateway_retried:rate1m > 0"),
        timeout=60,
        what="the retries in the recording rule",
    )
    rates = by_label(promql(prometheus, "instance:gateway_retried:rate1m > 0"), "instance")
    assert set(rates) == {sick_address}
    report(
        f"one replica unavailable, {len(samples)} requests: every client got 200; "
        f"Prometheus counted {answered_503:.0f} 503s of that replica, all retried by nginx"
    )
