"""Admission control in isolation: requests are admitted or refused from what they declare and what is in flight,
and deadlines come from the server's setting or the client's header."""

from __future__ import annotations

import pytest

from service.admission import UPLOAD_GRACE_SECONDS, Admission, Deadline
from service.errors import InvalidRequest, Overloaded
from service.inputs import images_in_body
from service.payloads import MIN_JSON_IMAGE_BYTES as MIN_BYTES_PER_IMAGE


def admission(**overrides: int) -> Admission:
    return Admission(**({"max_requests": 4, "image_capacity": 512, "max_images_per_request": 256} | overrides))


def test_admission_refuses_beyond_the_concurrency_cap_and_admits_again_after() -> None:
    control = admission(max_requests=2)
    with control.admit(100) as first, control.admit(100) as second:
        first.hold(1)
        second.hold(1)
        with pytest.raises(Overloaded) as raised, control.admit(100):
            pass
        assert raised.value.status_code == 503 and raised.value.headers["Retry-After"] == "1"
    with control.admit(100) as ticket:
        ticket.hold(1)
        assert control.requests == 1
    assert control.requests == 0 and control.images == 0 and control.refused == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("service.admission.time.monotonic", fake)
    return fake


def test_admission_an_upload_reserves_what_its_length_could_hold(clock: Clock) -> None:
    """64 fast clients each sending 256 images: beyond the capacity they are refused before their body is read."""
    control = admission(image_capacity=512)
    first, second = control.admit(MIN_BYTES_PER_IMAGE * 256), control.admit(MIN_BYTES_PER_IMAGE * 256)
    assert control.reserved == 512
    with pytest.raises(Overloaded, match="512 images in flight"):
        control.admit(MIN_BYTES_PER_IMAGE * 256)
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert control.reserved == 0


def test_admission_a_slow_upload_s_reservation_lapses(clock: Clock) -> None:
    """A client that declares a large body and trickles it cannot keep the others out for long."""
    control = admission(image_capacity=300)
    slow = control.admit(4_000_000)
    with pytest.raises(Overloaded):
        control.admit(MIN_BYTES_PER_IMAGE * 100)
    clock.now += UPLOAD_GRACE_SECONDS + 0.1
    with control.admit(MIN_BYTES_PER_IMAGE * 100) as fast:
        fast.hold(100)
        assert control.reserved == 0 and control.images == 100
    slow.__exit__(None, None, None)
    assert control.reserved == 0 and control.images == 0 and control.requests == 0


def test_admission_estimates_images_from_the_length() -> None:
    control = admission()
    assert control.estimated_images(MIN_BYTES_PER_IMAGE * 10) == 10
    assert control.estimated_images(10 * 1024 * 1024) == 256, "capped at the most images a request may carry"
    assert control.estimated_images(None) == 256, "a chunked body may be as large as allowed"
    assert control.estimated_images(10) == 1


def test_admission_refuses_when_the_images_in_flight_would_pass_the_capacity() -> None:
    control = admission(image_capacity=300)
    with control.admit(MIN_BYTES_PER_IMAGE * 256) as big:
        big.hold(256)
        with pytest.raises(Overloaded, match="images in flight"), control.admit(MIN_BYTES_PER_IMAGE * 100):
            pass
        with control.admit(MIN_BYTES_PER_IMAGE * 40) as small:
            small.hold(40)
            assert control.images == 296


def test_admission_refuses_at_hold_when_the_room_was_taken_during_the_upload(clock: Clock) -> None:
    control = admission(image_capacity=300)
    with control.admit(MIN_BYTES_PER_IMAGE * 200) as slow:
        clock.now += UPLOAD_GRACE_SECONDS + 0.1
        with control.admit(MIN_BYTES_PER_IMAGE * 200) as fast:
            fast.hold(200)
            with pytest.raises(Overloaded):
                slow.hold(200)
    assert control.images == 0 and control.requests == 0 and control.reserved == 0


def test_admission_corrects_the_estimate_once_the_images_are_counted() -> None:
    control = admission(image_capacity=300)
    with control.admit(MIN_BYTES_PER_IMAGE * 200) as first:
        first.hold(200)
        first.hold(1)  # a 300 KB photo is one image, not 200
        assert control.images == 1
        with control.admit(MIN_BYTES_PER_IMAGE * 250) as second, pytest.raises(Overloaded):
            second.hold(300)
    assert control.images == 0


def test_admission_admits_a_large_request_when_nothing_else_is_in_flight() -> None:
    control = admission(image_capacity=10)
    with control.admit(MIN_BYTES_PER_IMAGE * 50) as ticket:
        ticket.hold(50)
    assert control.images == 0


def test_deadline_takes_the_shorter_of_the_server_and_the_client() -> None:
    assert Deadline.for_request(100.0, 30_000, None).expires_at == 130.0
    assert Deadline.for_request(100.0, 30_000, "500").expires_at == 100.5
    assert Deadline.for_request(100.0, 30_000, "90000").expires_at == 130.0
    assert Deadline.for_request(100.0, 0, None).expires_at is None
    assert Deadline.for_request(100.0, 0, "250").expires_at == 100.25
    assert Deadline(99.0, 1.0).expired(now=100.0) and not Deadline(None, None).expired()


@pytest.mark.parametrize("header", ["soon", "-5", "0", "nan", "inf", ""])
def test_deadline_refuses_a_header_that_is_not_a_positive_number(header: str) -> None:
    with pytest.raises(InvalidRequest, match="X-Request-Timeout-Ms"):
        Deadline.for_request(0.0, 30_000, header)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"\x89PNG" + b"x" * 5_000_000, "image/png", 1),
        (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nx' * 3,
            "multipart/form-data",
            3,
        ),
        (b'{"images_b64": ["' + b"A" * 400_000 + b'", "' + b"B" * 400_000 + b'"]}', "application/json", 2),
        (b'{"image_b64": "' + b"A" * 100_000 + b'"}', "application/json", 1),
        (b'{"images": [' + b"0," * 784 * 10 + b"]}", "application/json; charset=utf-8", 11),
    ],
    ids=["raw image", "multipart", "base64 files", "one base64 file", "pixel arrays"],
)
def test_images_in_body_counts_without_parsing(body: bytes, content_type: str, expected: int) -> None:
    assert images_in_body(body, content_type, max_images=256) == expected
