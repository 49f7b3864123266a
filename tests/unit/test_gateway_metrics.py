"""The replica's Prometheus metrics, in one process (Flask's test client)."""

from prometheus_client.parser import text_string_to_metric_families


def scrape(client):
    """GET /metrics and return {(sample name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def requests_total(samples, endpoint, status):
    key = ("gateway_http_requests_total", (("endpoint", endpoint), ("status", status)))
    return samples.get(key, 0)


def test_requests_are_counted_by_route_and_status(client):
    for _ in range(3):
        client.get("/info")
    client.get("/healthz")
    client.post("/info")
    samples = scrape(client)
    assert requests_total(samples, "/info", "200") == 3
    assert requests_total(samples, "/healthz", "200") == 1
    # A wrong method matches no route rule either.
    assert requests_total(samples, "unmatched", "405") == 1


def test_unmatched_paths_share_one_label(client):
    for path in ("/nope", "/a/b/c", "/info/extra", "/%00"):
        assert client.get(path).status_code == 404
    samples = scrape(client)
    assert requests_total(samples, "unmatched", "404") == 4
    counted = {dict(labels)["endpoint"] for name, labels in samples if name.endswith("_total")}
    assert counted == {"unmatched"}


def test_latency_histogram_observes_every_request(client):
    for _ in range(5):
        client.get("/info")
    samples = scrape(client)
    count = ("gateway_http_request_duration_seconds_count", (("endpoint", "/info"),))
    infinite = (
        "gateway_http_request_duration_seconds_bucket",
        (("endpoint", "/info"), ("le", "+Inf")),
    )
    assert samples[count] == samples[infinite] == 5
    assert samples[("gateway_http_request_duration_seconds_sum", (("endpoint", "/info"),))] > 0


def test_in_flight_counts_only_the_scrape_itself(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("failing request")

    client = app.test_client()
    client.get("/info")
    assert client.get("/boom").status_code == 500
    samples = scrape(client)
    # Finished requests, failed ones too, are no longer in flight; the scrape is.
    assert samples[("gateway_http_requests_in_flight", ())] == 1
    assert requests_total(samples, "/boom", "500") == 1


def test_replica_identity_is_an_info_metric(client):
    body = client.get("/info").get_json()
    samples = scrape(client)
    labels = (("hostname", body["hostname"]), ("version", body["version"]))
    assert samples[("gateway_replica_info", labels)] == 1


def test_each_app_counts_on_its_own(app, client):
    from gateway import create_app

    client.get("/info")
    other = create_app({"TESTING": True}).test_client()
    assert requests_total(scrape(other), "/info", "200") == 0
    assert requests_total(scrape(client), "/info", "200") == 1
