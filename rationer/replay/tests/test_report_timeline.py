"""Budget events per team over time, as the report tabulates them."""

from __future__ import annotations

from rationer.replay.report import _event_timeline


def test_timeline_lists_only_periods_with_events_in_trace_hours() -> None:
    series = {
        "bin_s": 3600.0,
        "budget_events": {
            "finance": [{}, {"soft_alerts": 1}, {"downgrades": 2, "denials": 1}],
            "legal": [{}, {}, {}],
        },
    }
    assert _event_timeline(series) == [
        ("finance", "1.0-2.0", 1, 0, 0, 0),
        ("finance", "2.0-3.0", 0, 0, 2, 1),
    ]
