"""`juggler images` and the Engine API's image list as Docker prints them
(images/listing.py): go-units durations and sizes, the reference filter,
rows merged over agents."""

from __future__ import annotations

import pytest

from juggler.images.listing import (
    created_seconds,
    familiar_match,
    human_duration,
    human_size,
    image_rows,
    merge,
)
from juggler.v1 import agent_pb2

HOUR, DAY = 3600, 86400


@pytest.mark.parametrize(("seconds", "text"), [
    (0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"),
    (3600, "About an hour"), (5399, "About an hour"), (5400, "2 hours"), (47 * HOUR, "47 hours"),
    (48 * HOUR, "2 days"), (13 * DAY, "13 days"), (14 * DAY, "2 weeks"), (59 * DAY, "8 weeks"),
    (60 * DAY, "2 months"), (729 * DAY, "24 months"), (730 * DAY, "2 years"),
])
def test_durations_as_go_units_prints_them(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(("n", "text"), [
    (0, "0B"), (123, "123B"), (999, "999B"), (1000, "1kB"), (1234, "1.23kB"),
    (4_261_000, "4.26MB"), (1_200_000_000, "1.2GB"), (10**13, "10TB"),
])
def test_sizes_as_go_units_prints_them(n: int, text: str) -> None:
    assert human_size(n) == text


def test_created_reads_rfc3339_with_nanoseconds_and_offsets() -> None:
    assert created_seconds("2024-01-02T03:04:05Z") == 1704164645.0
    assert created_seconds("2024-01-02T03:04:05.123456789Z") == pytest.approx(1704164645.123456)
    assert created_seconds("2024-01-02T04:04:05.5+01:00") == 1704164645.5
    assert created_seconds("") is None and created_seconds("yesterday") is None


@pytest.mark.parametrize(("pattern", "reference", "matches"), [
    ("busybox", "docker.io/library/busybox:latest", True),
    ("busybox:latest", "docker.io/library/busybox:latest", True),
    ("busybox:1", "docker.io/library/busybox:latest", False),
    ("busy*", "docker.io/library/busybox:1.36", True),
    ("user/app", "docker.io/user/app:2", True),
    ("*", "docker.io/user/app:2", False),  # `*` stops at '/', as Go's path.Match
    ("*/*", "docker.io/user/app:2", True),
    ("library/busybox", "docker.io/library/busybox:latest", False),  # Docker's too
    ("127.0.0.1:5000/base", "127.0.0.1:5000/base:1", True),
    ("127.0.0.1:5000/base:[0-9]", "127.0.0.1:5000/base:1", True),
    ("127.0.0.1:5000/base:[^0-9]", "127.0.0.1:5000/base:1", False),
])
def test_the_reference_filter_is_dockers_familiar_match(pattern: str, reference: str,
                                                         matches: bool) -> None:
    assert familiar_match(pattern, reference) is matches


def image(n: int, *refs: str, created: str = "2024-01-01T00:00:00Z",
          size: int = 1234) -> agent_pb2.Image:
    return agent_pb2.Image(id=f"sha256:{n:x}" + "0" * 63, references=refs, created=created,
                           size=size)


def test_rows_one_per_reference_newest_first_merged_over_agents() -> None:
    now = created_seconds("2024-01-15T00:00:00Z")
    assert now is not None
    on_a = [image(1, "docker.io/library/busybox:latest"),
            image(2, "127.0.0.1:5000/app:1", created="2024-01-14T23:00:00Z", size=4_261_000)]
    on_b = [image(1, "docker.io/library/busybox:1.36"), image(3)]
    rows = image_rows(merge(on_a + on_b), now)
    one = "1" + "0" * 11
    assert rows == [
        ("127.0.0.1:5000/app", "1", "2" + "0" * 11, "About an hour ago", "4.26MB"),
        ("busybox", "1.36", one, "2 weeks ago", "1.23kB"),
        ("busybox", "latest", one, "2 weeks ago", "1.23kB"),
        ("<none>", "<none>", "3" + "0" * 11, "2 weeks ago", "1.23kB"),
    ]
    assert image_rows(merge(on_a + on_b), now, "busybox:1.36") == [rows[1]]
    full = image_rows(merge(on_a), now, "127.0.0.1:5000/app", no_trunc=True)
    assert [r[2] for r in full] == ["sha256:2" + "0" * 63]
