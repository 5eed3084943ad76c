"""usd_text: exact, and never zero for a non-zero amount (property tests)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rationer.platform.money import NANO_PER_USD, usd_text, usd_to_nano
from rationer.up import UpOptions, banner

AMOUNTS = st.integers(min_value=-(10**18), max_value=10**18)


@given(AMOUNTS)
def test_a_non_zero_amount_never_prints_as_zero(nano: int) -> None:
    text = usd_text(nano, dollar=False, grouping=False)
    shown = Decimal(text)
    assert (shown == 0) == (nano == 0)
    # Truncated toward zero, by less than one unit of the last place shown.
    exact = Decimal(nano) / NANO_PER_USD
    places = len(text.split(".")[1])
    assert abs(shown) <= abs(exact) < abs(shown) + Decimal(10) ** -places
    assert places >= 6


@given(st.integers(min_value=100, max_value=NANO_PER_USD // 100 - 1))
def test_sub_cent_amounts_keep_three_significant_digits(nano: int) -> None:
    shown = Decimal(usd_text(nano, dollar=False)) * NANO_PER_USD
    digits = str(nano)
    assert shown == int(digits[:3]) * 10 ** (len(digits) - 3) or len(digits) > 6  # 6+ digits: six places suffice
    assert shown >= nano // 10 ** max(0, len(digits) - 3) * 10 ** max(0, len(digits) - 3)


@pytest.mark.parametrize(("typed", "nano"), [("25", 25 * NANO_PER_USD), ("0.00001", 10_000), ("0.1", 100_000_000)])
def test_usd_as_typed_is_exact(typed: str, nano: int) -> None:
    assert usd_to_nano(typed) == nano


@pytest.mark.parametrize("bad", ["nan", "inf", "x"])
def test_usd_that_is_not_a_finite_number_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        usd_to_nano(bad)


def test_banner_points_at_the_wrapper_and_names_non_default_addresses() -> None:
    creds = {"demo_api_key": "rk_demo", "admin_api_key": "rk_admin"}
    plain = banner(UpOptions(), creds)
    assert './scripts/rationer chat "' in plain and ". .venv/bin/activate" in plain and "--address" not in plain
    moved = banner(UpOptions(base_port=7500, data_dir=UpOptions().data_dir / "x"), creds)
    assert "--address 127.0.0.1:7500" in moved and "--ledger 127.0.0.1:7501" in moved and "--data-dir" in moved


def test_up_serves_the_console_with_a_generated_private_secret(tmp_path: Path) -> None:
    import stat

    from rationer.up import build_config
    from services.router.settings import RouterSettings

    router = build_config(UpOptions(data_dir=tmp_path / "d", http_port=8123))["router"]
    secret = Path(router["http"]["console"]["secret_file"])
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_text().strip()) >= 32
    loaded = RouterSettings.model_validate({**router, "settlement_journal": ""}).http.console
    assert loaded.secret_value() == secret.read_text().strip()
    assert build_config(UpOptions(data_dir=tmp_path / "d"))["router"]["http"]["console"] == router["http"]["console"]
    assert "console     : http://127.0.0.1:8123/console" in banner(UpOptions(http_port=8123), {"demo_api_key": "k"})
