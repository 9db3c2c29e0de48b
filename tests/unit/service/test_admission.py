"""Admission control in isolation: requests are admitted or refused from what they declare and what is in flight,
and deadlines come from the server's setting or the client's header."""

from __future__ import annotations

import pytest

from service.admission import MIN_BYTES_PER_IMAGE, Admission, Deadline
from service.errors import InvalidRequest, Overloaded


def admission(**overrides: int) -> Admission:
    return Admission(**({"max_requests": 4, "image_capacity": 512, "max_images_per_request": 256} | overrides))


def test_admission_refuses_beyond_the_concurrency_cap_and_admits_again_after() -> None:
    control = admission(max_requests=2)
    with control.admit(100), control.admit(100):
        with pytest.raises(Overloaded) as raised, control.admit(100):
            pass
        assert raised.value.status_code == 503 and raised.value.headers["Retry-After"] == "1"
    with control.admit(100):
        assert control.requests == 1
    assert control.requests == 0 and control.images == 0 and control.refused == 1


def test_admission_estimates_images_from_the_declared_length() -> None:
    control = admission()
    with control.admit(MIN_BYTES_PER_IMAGE * 10) as ticket:
        assert ticket.images == 10
    with control.admit(10 * 1024 * 1024) as ticket:
        assert ticket.images == 256, "capped at the most images a request may carry"
    with control.admit(None) as ticket:
        assert ticket.images == 256, "a chunked body may be as large as allowed"


def test_admission_refuses_when_the_images_in_flight_would_pass_the_capacity() -> None:
    control = admission(image_capacity=300)
    with control.admit(MIN_BYTES_PER_IMAGE * 256):
        with pytest.raises(Overloaded, match="images in flight"), control.admit(MIN_BYTES_PER_IMAGE * 100):
            pass
        with control.admit(MIN_BYTES_PER_IMAGE * 40):
            assert control.images == 296


def test_admission_corrects_the_estimate_once_the_images_are_counted() -> None:
    control = admission(image_capacity=300)
    with control.admit(MIN_BYTES_PER_IMAGE * 200) as first:
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
