"""Results sockets and webhook target checks, without the rest of the platform."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from jobs.errors import ValidationError
from jobs.events import EXECUTION_COMPLETE, allow_list, check_webhook, event_document
from jobs.results import ResultsSocket


def test_each_datagram_is_one_result_in_order_and_long_ones_are_cut(tmp_path: Path):
    got: list[tuple[bytes, bool]] = []
    done = threading.Event()

    def keep(data: bytes, cut: bool) -> None:
        got.append((data, cut))
        if len(got) == 3:
            done.set()

    results = ResultsSocket(tmp_path / "r.sock", keep, max_bytes=8)
    path = results.open()
    assert (Path(path).stat().st_mode & 0o777) == 0o666
    assert (Path(path).parent.stat().st_mode & 0o777) == 0o700, "no other local user gets in"
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for data in (b"one", b"", b"0123456789"):
        sender.sendto(data, path)
    assert done.wait(5)
    results.close()
    assert got == [(b"one", False), (b"", False), (b"01234567", True)]
    assert not Path(path).exists()


def test_close_takes_what_was_sent_before_it(tmp_path: Path):
    got: list[bytes] = []
    results = ResultsSocket(tmp_path / "r.sock", lambda d, _c: got.append(d), 64)
    path = results.open()
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for i in range(20):
        sender.sendto(str(i).encode(), path)
    results.close()
    assert got == [str(i).encode() for i in range(20)]


def test_a_socket_path_too_long_for_unix_is_refused_up_front(tmp_path: Path):
    with pytest.raises(ValueError, match="shorter results_dir"):
        ResultsSocket(tmp_path / ("x" * 120) / "r.sock", lambda d, c: None, 64)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://localhost/x",
                                 "http://10.1.2.3/", "http://169.254.169.254/latest",
                                 "http://[::1]/", "http://192.168.0.1/", "http://0.0.0.0/",
                                 "ftp://example.org/", "http://user:pw@127.0.0.1/",
                                 "not a url", "http://[::ffff:127.0.0.1]/"])
def test_webhooks_to_special_networks_are_refused(url: str):
    with pytest.raises(ValidationError) as caught:
        check_webhook(url, ())
    assert caught.value.message.startswith("webhook")


def test_the_allow_list_names_hosts_or_networks():
    assert check_webhook("http://127.0.0.1:8080/hook", allow_list("127.0.0.0/8"))
    assert check_webhook("http://localhost:8080/hook", allow_list("localhost"))
    with pytest.raises(ValidationError):
        check_webhook("http://10.0.0.1/", allow_list("127.0.0.1"))


def test_events_carry_abacos_fields():
    actor = {"tenant": "DEV", "id": "a1", "link": "b2", "webhook": ""}
    event = event_document(actor, EXECUTION_COMPLETE, execution_id="e1", exit_code=0)
    assert {"tenant_id", "actor_id", "event_type", "event_time_utc", "event_time_display",
            "_abaco_link", "_abaco_webhook", "execution_id"} <= set(event)
    assert event["event_type"] == "EXECUTION_COMPLETE" and event["_abaco_link"] == "b2"
