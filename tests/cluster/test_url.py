"""How a Redis URL selects a cluster client (no Redis needed)."""

from __future__ import annotations

import pytest

from emp.redis.client import parse_cluster_url


@pytest.mark.parametrize(
    ("url", "plain", "explicit"),
    [
        ("redis://h:6379/0", "redis://h:6379/0", None),
        ("redis+cluster://h:7000/0", "redis://h:7000/0", True),
        ("rediss+cluster://:pw@h:7000", "rediss://:pw@h:7000", True),
        ("redis://h:7000/0?cluster=1", "redis://h:7000/0", True),
        ("redis://h:7000/0?cluster=true&socket_timeout=3", "redis://h:7000/0?socket_timeout=3", True),
        ("redis://h:6379/0?cluster=0", "redis://h:6379/0", False),
        ("redis+cluster://h:7000/0?cluster=0", "redis://h:7000/0", True),  # the scheme wins
    ],
)
def test_the_url_alone_says_cluster_or_not(url: str, plain: str, explicit: bool | None) -> None:
    assert parse_cluster_url(url) == (plain, explicit)


def test_a_cluster_parameter_that_is_no_yes_or_no_is_refused() -> None:
    with pytest.raises(ValueError, match="cluster=1 or cluster=0"):
        parse_cluster_url("redis://h/0?cluster=maybe")
