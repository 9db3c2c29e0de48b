"""One client never hurts the others: a real server with tight limits, driven with raw sockets where an HTTP client
would be too polite (endless headers, trickled bodies, idle connections, hang-ups mid-upload).

No test here asserts a duration: where fairness is the point, the assertion is an order (the small upload is
answered before the heavy one that started first) or a state (the connection was closed, the answer was 408).
"""

from __future__ import annotations

import base64
import functools
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from PIL import Image

from service.admission import UPLOAD_GRACE_SECONDS
from service.schemas import ErrorEnvelope
from tests.conftest import COMMITTED_MODEL
from tests.drawing import as_person_would, encode
from tests.integration.conftest import ServerProcess, local_only, start_server, wait_until_ready

pytestmark = local_only

TIGHT_LIMITS = {
    "DIGIT_SERVE_IDLE_TIMEOUT_SECONDS": "1",
    "DIGIT_SERVE_HEADER_TIMEOUT_SECONDS": "1",
    "DIGIT_SERVE_BODY_TIMEOUT_SECONDS": "1",
    "DIGIT_SERVE_BODY_MIN_RATE": "2000",
    "DIGIT_SERVE_MAX_REQUEST_PIXELS": "60000000",
    "DIGIT_SERVE_DECODE_BACKLOG_PIXELS": "100000000",
    "DIGIT_SERVE_MAX_CONCURRENT_REQUESTS": "3",
    "DIGIT_SERVE_QUEUE_CAPACITY": "64",
    "DIGIT_SERVE_MAX_IMAGES_PER_REQUEST": "64",
}


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(COMMITTED_MODEL, tmp_path_factory.mktemp("tight") / "server.log", env=TIGHT_LIMITS)
    try:
        wait_until_ready(server)
        yield server
    finally:
        server.stop()


def address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def connect(server: ServerProcess, timeout: float = 15) -> socket.socket:
    connection = socket.create_connection(address(server), timeout=timeout)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def read_response(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response, read until the server closes the connection."""
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def post_head(path: str, content_length: int, content_type: str = "application/json") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
    return (head + f"Content-Length: {content_length}\r\n\r\n").encode()


def png_digit(mnist_sample: dict) -> bytes:
    return encode(as_person_would(mnist_sample["x_test"][0], seed=0))


@functools.cache
def heavy_image() -> str:
    """A 20-megapixel RGBA PNG of a thick bar, base64: 360 KB that take ~0.25 s to decode."""
    sheet = Image.new("RGBA", (5000, 4000), (255, 255, 255, 255))
    sheet.paste((0, 0, 0, 255), (2400, 800, 2600, 3200))
    return base64.b64encode(encode(sheet, "PNG", compress_level=1)).decode()


def heavy_request(images: int = 3) -> dict[str, list[str]]:
    """`images` heavy images in one request; three (60 MP) are all this server allows per request."""
    return {"images_b64": [heavy_image()] * images}


def test_hardening_a_png_is_not_held_up_by_another_clients_heavy_images(
    tight_server: ServerProcess, mnist_sample: dict
) -> None:
    heavy = heavy_request()
    finished: dict[str, float] = {}
    statuses: dict[str, int] = {}
    texts: dict[str, str] = {}

    def send(name: str, **request: object) -> None:
        response = httpx.post(f"{tight_server.url}/predict", timeout=60, **request)  # type: ignore[arg-type]
        finished[name] = time.monotonic()
        statuses[name] = response.status_code
        texts[name] = response.text[:300]

    heavy_thread = threading.Thread(target=send, args=("heavy",), kwargs={"json": heavy})
    heavy_thread.start()
    time.sleep(0.15)  # the heavy request is read and decoding
    send("png", files={"file": ("seven.png", png_digit(mnist_sample), "image/png")})
    heavy_thread.join()
    assert statuses == {"heavy": 200, "png": 200}, texts
    assert finished["png"] < finished["heavy"], "the small upload waited for the heavy one"


def test_hardening_a_request_over_the_pixel_budget_is_413(tight_server: ServerProcess) -> None:
    response = httpx.post(f"{tight_server.url}/predict", json=heavy_request(4), timeout=60)
    assert response.status_code == 413, response.text
    message = ErrorEnvelope.model_validate(response.json()).error.message
    assert "80.0 megapixels" in message and "60.0 megapixels" in message


def test_hardening_the_decode_backlog_refuses_with_503_and_retry_after(tight_server: ServerProcess) -> None:
    body = heavy_request()  # 60 MP each; the backlog holds 100 MP
    responses: list[httpx.Response] = []
    threads = [
        threading.Thread(
            target=lambda: responses.append(httpx.post(f"{tight_server.url}/predict", json=body, timeout=60))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(response.status_code for response in responses) == [200, 503], [r.text for r in responses]
    refused = next(response for response in responses if response.status_code == 503)
    assert refused.json()["error"]["code"] == "overloaded" and refused.headers["retry-after"] == "1"


def test_hardening_decoding_stops_when_the_client_hangs_up(tight_server: ServerProcess) -> None:
    body = orjson.dumps(heavy_request())
    with connect(tight_server) as connection:
        connection.sendall(post_head("/predict", len(body)) + body)
    deadline = time.monotonic() + 30
    while "decoding stopped after" not in tight_server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in tight_server.log().splitlines() if "decoding stopped after" in line]
    assert lines and "of 3 images" in lines[-1], tight_server.log()[-2000:]
    assert "decoding stopped after 3 of 3" not in lines[-1]


def test_hardening_an_idle_connection_is_closed(tight_server: ServerProcess) -> None:
    with connect(tight_server) as connection:
        assert connection.recv(1024) == b"", "a connection that never sent a request must be closed"


def test_hardening_slow_headers_get_408(tight_server: ServerProcess) -> None:
    with connect(tight_server) as connection:
        connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        status, headers, body = read_response(connection)
    assert status == 408 and headers["connection"] == "close"
    assert ErrorEnvelope.model_validate_json(body).error.code == "request_timeout"


def test_hardening_a_trickled_body_gets_408(tight_server: ServerProcess) -> None:
    with connect(tight_server) as connection:
        connection.sendall(post_head("/predict", 100_000) + b'{"image": [')
        try:
            for _ in range(40):
                connection.sendall(b"0,")
                time.sleep(0.1)
        except OSError:
            pass  # the server closed the connection: its answer is waiting in the buffer
        status, _, body = read_response(connection)
    assert status == 408
    envelope = ErrorEnvelope.model_validate_json(body)
    assert envelope.error.code == "request_timeout" and "too slowly" in envelope.error.message


def test_hardening_an_endless_header_is_cut_off_with_431(tight_server: ServerProcess) -> None:
    with connect(tight_server) as connection:
        connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\nX-Endless: ")
        try:
            for _ in range(200):
                connection.sendall(b"a" * 1000)
        except OSError:
            pass
        status, _, body = read_response(connection)
    assert status == 431
    assert ErrorEnvelope.model_validate_json(body).error.code == "header_fields_too_large"


def test_hardening_overload_is_refused_before_the_body_is_read(tight_server: ServerProcess) -> None:
    """While a request is at work (three slow images), one whose declared length could hold the whole capacity
    (64 images on this server) is answered 503 without sending its body."""
    heavy = orjson.dumps(heavy_request())
    worker = threading.Thread(
        target=httpx.post,
        args=(f"{tight_server.url}/predict",),
        kwargs={"content": heavy, "headers": {"content-type": "application/json"}, "timeout": 60},
    )
    worker.start()
    try:
        time.sleep(0.15)  # its body is in, and its images are decoding
        with connect(tight_server) as connection:
            connection.sendall(post_head("/predict", 400_000))
            status, headers, body = read_response_head_and_body(connection)
        assert status == 503 and headers["retry-after"] == "1"
        assert ErrorEnvelope.model_validate_json(body).error.code == "overloaded"
    finally:
        worker.join()


def test_hardening_slow_uploads_do_not_lock_out_the_others(tight_server: ServerProcess) -> None:
    """Slow uploads declaring large bodies reserve room only for a grace period: then the others get in again."""
    holding = [connect(tight_server) for _ in range(5)]
    try:
        for connection in holding:
            connection.sendall(post_head("/predict", 4_000_000) + b'{"image": [0')
        time.sleep(UPLOAD_GRACE_SECONDS + 0.3)
        response = httpx.post(f"{tight_server.url}/predict", json={"image": [0] * 784})
        assert response.status_code == 200, response.text
    finally:
        for connection in holding:
            connection.close()


def read_response_head_and_body(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response on a connection the server keeps open: the head, then Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, "the server closed the connection without answering"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    while len(body) < int(headers["content-length"]):
        body += connection.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_hardening_a_client_hanging_up_mid_upload_is_one_info_line(tight_server: ServerProcess) -> None:
    for _ in range(5):
        with connect(tight_server) as connection:
            connection.sendall(post_head("/predict", 50_000) + b'{"images": [[0, 0')
            time.sleep(0.05)
    time.sleep(0.5)
    log = tight_server.log()
    assert "client disconnected before it was answered" in log
    assert "Traceback" not in log and "unhandled error" not in log and "ERROR" not in log, log[-3000:]


def test_hardening_other_clients_see_no_change_under_slow_ones(tight_server: ServerProcess) -> None:
    slow = [connect(tight_server) for _ in range(20)]
    try:
        for connection in slow:
            connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: t")
        with httpx.Client(base_url=tight_server.url) as client:
            for _ in range(20):  # keep-alive requests on one connection, as before
                assert client.post("/predict", json={"image": [0] * 784}).status_code == 200
    finally:
        for connection in slow:
            connection.close()


def test_hardening_a_short_client_deadline_is_504_before_the_model(tight_server: ServerProcess) -> None:
    response = httpx.post(
        f"{tight_server.url}/predict", json={"image": [0] * 784}, headers={"X-Request-Timeout-Ms": "0.001"}
    )
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "deadline_exceeded"


def test_hardening_shutdown_answers_a_slow_upload_with_503(tmp_path: Path) -> None:
    server = start_server(COMMITTED_MODEL, tmp_path / "server.log")
    try:
        wait_until_ready(server)
        with connect(server, timeout=30) as connection:
            connection.sendall(post_head("/predict", 10_000) + b'{"image": [0')
            time.sleep(0.3)
            server.process.terminate()
            status, headers, body = read_response(connection)
        assert status == 503 and headers["retry-after"] == "1"
        assert ErrorEnvelope.model_validate_json(body).error.code == "shutting_down"
        assert server.process.wait(timeout=30) in (0, -15)  # uvicorn re-raises the signal it handled
        assert "Traceback" not in server.log() and "Finished server process" in server.log()
    finally:
        server.stop()
