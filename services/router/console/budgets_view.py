"""The Budgets page's data and drawing: BudgetStatus as JSON, the burn-down SVG, form parsing.

Pure: no aiohttp, no gRPC calls. Every string that came from the ledger is
escaped where it is drawn (scope ids, alert texts, URLs are user-made).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from rationer.api.ledger.v1 import ledger_pb2 as pb
from rationer.errors import InvalidArgument
from services.ledger import convert as cv

MAX_USD = 1_000_000_000  # the ledger's hard-limit ceiling, in dollars
NANO = 1_000_000_000
W, H, PAD = 640, 200, 36
# Presentation attributes, not CSS: the chart is an <img>, and the console's CSP allows no inline style.
COLORS = {"alert-line": "#c9a227", "soft-line": "#e08a00", "hard-line": "#c0392b", "spend": "#1f6feb",
          "forecast": "#6e7781", "frame": "#d0d7de", "axis": "#57606a"}


def _iso(t: Timestamp, present: bool = True) -> str | None:
    return t.ToDatetime(UTC).isoformat() if present else None


def _us(t: Timestamp) -> int:
    return t.seconds * 1_000_000 + t.nanos // 1000


def status_json(s: pb.BudgetStatusEntry) -> dict[str, Any]:
    b = s.budget
    return {
        "id": b.id, "scope": {"kind": cv.SCOPE_KIND[b.scope.kind], "id": b.scope.id}, "unit": cv.UNIT[b.unit],
        "period": cv.PERIOD[b.period], "hard_limit": b.hard_limit, "soft_fraction": b.soft_fraction,
        "alert_fractions": list(b.alert_fractions), "spent": b.spent, "held": b.held,
        "period_start": _iso(s.period_start), "period_end": _iso(b.period_end, b.HasField("period_end")),
        "hourly": s.hourly, "spent_rollups": s.spent_rollups, "rate_per_day": s.rate_per_day,
        "rate_since": _iso(s.rate_since), "runs_out_at": _iso(s.runs_out_at, s.HasField("runs_out_at")),
        "runs_out_before_period_end": s.runs_out_before_period_end,
        "points": [{"start": _iso(p.start), "amount": p.amount, "cumulative": p.cumulative} for p in s.points],
        "alerts": [{"id": a.id, "kind": a.kind, "fraction": a.fraction, "time": _iso(a.time), "spent": a.spent,
                    "text": a.text} for a in s.alerts],
    }  # fmt: skip


def amount_text(unit: str, n: float) -> str:
    if unit != "usd":
        return f"{int(n):,} tokens"
    usd = n / NANO
    return f"${usd:,.2f}" if usd >= 0.01 or n == 0 else f"${usd:.6g}"


def burndown_svg(s: pb.BudgetStatusEntry, now: Timestamp) -> str:
    """Cumulative spend against the period, the soft, alert and hard lines, and the forecast."""
    b, unit = s.budget, cv.UNIT[s.budget.unit]
    x0 = _us(s.points[0].start) if s.points and not b.HasField("period_end") else _us(s.period_start)
    now_us = _us(now)
    x1 = _us(b.period_end) if b.HasField("period_end") else now_us
    x1 = max(x1, x0 + 1)
    end_spend = b.spent + s.rate_per_day * (x1 - now_us) / 86_400e6 if x1 > now_us else b.spent
    top = max(b.hard_limit, max((p.cumulative for p in s.points), default=0), min(end_spend, 2 * b.hard_limit), 1)
    top *= 1.08

    def x(us: float) -> float:
        return PAD + (W - 2 * PAD) * min(1.0, max(0.0, (us - x0) / (x1 - x0)))

    def y(v: float) -> float:
        return H - PAD - (H - 2 * PAD) * min(1.0, max(0.0, v / top))

    step = 3_600e6 if s.hourly else 86_400e6
    pts = [(x(x0), y(0))] + [(x(_us(p.start) + step), y(p.cumulative)) for p in s.points]
    line = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
    parts = [f'<svg class="burndown" viewBox="0 0 {W} {H}" role="img" aria-label="'
             f'{html.escape(b.id)} burn-down" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" class="frame" fill="none" '
             f'stroke="{COLORS["frame"]}"/>', '<g font-family="sans-serif" font-size="11">']
    for frac in b.alert_fractions:
        if abs(frac - b.soft_fraction) > 1e-9:  # the soft line is drawn and named below
            parts.append(_hline(y(frac * b.hard_limit), "alert-line", f"alert {frac:g}"))
    parts.append(_hline(y(b.soft_fraction * b.hard_limit), "soft-line", f"soft {b.soft_fraction:g}"))
    parts.append(_hline(y(b.hard_limit), "hard-line", f"hard {amount_text(unit, b.hard_limit)}"))
    parts.append(f'<polyline class="spend" fill="none" stroke="{COLORS["spend"]}" stroke-width="2" points="{line}"/>')
    if s.rate_per_day > 0 and x1 > now_us:
        parts.append(f'<line class="forecast" x1="{x(now_us):.1f}" y1="{y(b.spent):.1f}" x2="{x(x1):.1f}" '
                     f'y2="{y(end_spend):.1f}" stroke="{COLORS["forecast"]}" stroke-dasharray="4 3"/>')  # fmt: skip
    label = datetime.fromtimestamp(x0 / 1e6, UTC).strftime("%Y-%m-%d")
    axis = COLORS["axis"]
    parts.append(f'<text x="{PAD}" y="{H - 10}" class="axis" fill="{axis}">{label}</text>')
    parts.append(f'<text x="{W - PAD}" y="{H - 10}" class="axis" fill="{axis}" text-anchor="end">'
                 f'{datetime.fromtimestamp(x1 / 1e6, UTC).strftime("%Y-%m-%d")}</text></g></svg>')  # fmt: skip
    return "".join(parts)


def _hline(yy: float, cls: str, label: str) -> str:
    c = COLORS[cls]
    dash = ' stroke-dasharray="2 3"' if cls != "hard-line" else ""
    # Alert lines are named on the left, soft and hard on the right: near lines never overprint.
    at = f'x="{PAD + 4}" text-anchor="start"' if cls == "alert-line" else f'x="{W - PAD - 4}" text-anchor="end"'
    return (f'<line class="{cls}" x1="{PAD}" x2="{W - PAD}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{c}"{dash}/>'
            f'<text class="{cls}-label" {at} y="{yy - 3:.1f}" fill="{c}">{html.escape(label)}</text>')


@dataclass(frozen=True)
class BudgetForm:
    scope_kind: str
    scope_id: str
    unit: str
    period: str
    hard_limit: int
    soft_fraction: float
    alert_fractions: tuple[float, ...]


def _number(form: Mapping[str, str], name: str, what: str) -> float:
    raw = (form.get(name) or "").strip()
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgument(f"{what} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise InvalidArgument(f"{what} must be a finite number, got {raw!r}")
    return value


def parse_fractions(raw: str) -> tuple[float, ...]:
    """``"0.5, 0.8, 0.95"`` (or ``"50%, 80%"``); "" = keep the budget's (a new one: the default)."""
    out = []
    for part in (p.strip() for p in raw.replace(";", ",").split(",")):
        if not part:
            continue
        pct = part.endswith("%")
        try:
            f = float(part.rstrip("%")) / (100 if pct else 1)
        except ValueError:
            msg = f"alert fractions must be numbers like 0.5, 0.8, 0.95 (or 50%), got {part!r}"
            raise InvalidArgument(msg) from None
        if not 0 < f <= 1:
            raise InvalidArgument(f"each alert fraction must be in (0, 1] (0% < x <= 100%), got {part!r}")
        out.append(f)
    return tuple(out)


def parse_budget_form(form: Mapping[str, str]) -> BudgetForm:
    """The create/change form: scope kind:id, unit, period, limit (USD or tokens), soft, alert lines."""
    kind, sep, scope_id = (form.get("scope") or "").strip().partition(":")
    if not sep or kind not in cv.SCOPE_KIND_PB or not scope_id:
        raise InvalidArgument("scope must look like org:acme, team:acme/eng, user:acme/eng/a@x.com, key:k_... "
                              f"or project:acme/web, got {form.get('scope', '')!r}")  # fmt: skip
    unit, period = form.get("unit", "usd"), form.get("period", "monthly")
    if unit not in cv.UNIT_PB:
        raise InvalidArgument(f"unit must be usd or tokens, got {unit!r}")
    if period not in cv.PERIOD_PB:
        raise InvalidArgument(f"period must be daily, monthly or lifetime, got {period!r}")
    limit = _number(form, "hard_limit", "hard limit")
    if unit == "usd" and not 0 <= limit <= MAX_USD:
        raise InvalidArgument(f"hard limit must be between $0 and ${MAX_USD:,}, got {limit:g}")
    if unit == "tokens" and (limit < 0 or limit != int(limit) or limit > 10**18):
        raise InvalidArgument(f"hard limit in tokens must be a whole number >= 0, got {limit:g}")
    soft = _number(form, "soft_fraction", "soft fraction") if (form.get("soft_fraction") or "").strip() else 0.0
    if not 0 <= soft <= 1:
        raise InvalidArgument(f"soft fraction must be in (0, 1] (or empty for the default 0.8), got {soft:g}")
    nano = round(limit * NANO) if unit == "usd" else int(limit)
    return BudgetForm(kind, scope_id, unit, period, nano, soft, parse_fractions(form.get("alert_fractions", "")))
