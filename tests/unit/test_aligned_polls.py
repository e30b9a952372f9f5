"""Interval polls are aligned per source: apps of one repository poll together (one shared ls-remote)."""

from gitopsd.engine.triggers import aligned


def test_apps_of_one_source_poll_at_the_same_instants() -> None:
    # Two apps of one repository finishing their reconciles at different times poll on the
    # same instants (a whole number of intervals apart), so their polls coincide.
    a = 1000.0 + aligned(30, 0.1, "https://git.example/r.git", now=1000.0)
    b = 1004.3 + aligned(30, 0.1, "https://git.example/r.git", now=1004.3)
    c = 1013.9 + aligned(30, 0.1, "https://git.example/r.git", now=1013.9)
    assert abs(a - b) < 1e-6
    assert abs((c - a) % 30) < 1e-6 or abs((c - a) % 30 - 30) < 1e-6
    other = 1000.0 + aligned(30, 0.1, "https://git.example/other.git", now=1000.0)
    assert abs((other - a) % 30) > 1e-3


def test_sources_are_spread_and_polls_stay_about_one_interval_apart() -> None:
    phases = {round(aligned(30, 0.1, f"https://git.example/r{i}.git", now=0.0), 3) for i in range(20)}
    assert len(phases) > 10  # different repositories do not all poll at once
    for now in (0.0, 1.0, 14.9, 15.1, 29.0):
        delay = aligned(30, 0.1, "k", now=now)
        assert 15 <= delay <= 45
