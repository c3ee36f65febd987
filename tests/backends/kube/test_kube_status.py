"""Results framed in pod logs, and watch streams split into events: the pure half of the kube backend."""

from __future__ import annotations

import json

from fleet.backends.kube.status import (
    encode_result,
    extract_result,
    job_facts,
    log_tail,
    parse_watch_line,
    pod_facts,
    split_lines,
)


def test_result_survives_the_log_with_engine_noise_around_it() -> None:
    document = json.dumps({"tokens": list(range(20000))}).encode()
    log = "INFO starting\n" * 50 + encode_result(document) + "INFO bye\n"
    assert extract_result(log) == (document, None)
    assert "FLEET-RESULT" not in log_tail(log) and "INFO bye" in log_tail(log)


def test_truncated_or_corrupted_results_are_refused_with_a_reason() -> None:
    framed = encode_result(b'{"a": 1}')
    truncated, why = extract_result(framed.rsplit("\n", 2)[0])
    assert truncated is None and why is not None and "end marker" in why
    header, body, end = framed.strip().split("\n")
    tampered = "\n".join([header.replace("bytes=8", "bytes=9"), body, end])
    assert extract_result(tampered)[0] is None
    assert extract_result("no result here") == (None, None)


def test_watch_lines_are_reassembled_across_chunk_boundaries() -> None:
    events = [{"type": "ADDED", "object": {"metadata": {"name": f"j{i}"}}} for i in range(3)]
    data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    chunks = iter([data[i:i + 7] for i in range(0, len(data), 7)])
    parsed = [parse_watch_line(line) for line in split_lines(chunks)]
    assert [e.object["metadata"]["name"] for e in parsed] == ["j0", "j1", "j2"]
    gone = parse_watch_line(b'{"type": "ERROR", "object": {"code": 410}}')
    assert gone.gone


def test_job_and_pod_status_become_facts() -> None:
    job = {"metadata": {"name": "j"}, "status": {"conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"},
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too long"}]}}
    facts = job_facts(job)
    assert facts.failed and facts.reason == "DeadlineExceeded"
    pod = {"metadata": {"name": "p"}, "status": {"phase": "Failed", "conditions": [
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}],
        "containerStatuses": [{"state": {"terminated": {"exitCode": 143, "reason": "Error"}}}]}}
    assert pod_facts(pod).disruption_reason == "PreemptionByScheduler"
    assert pod_facts(pod).exit_code == 143
