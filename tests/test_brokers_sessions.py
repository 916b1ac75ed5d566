"""Trading calendars (brokers.sessions): CME Globex's weekly schedule, its daily halt and DST, in UTC."""

from __future__ import annotations

from datetime import datetime as D

import pytest

from brokers import sessions
from brokers.sessions import add_week_hours, check_time, is_open, last_close
from minehedge.errors import ConfigError

CME = "cme_globex"


def test_saturday_is_closed_all_day_and_opens_on_sunday_evening_chicago_time():
    assert not any(is_open(CME, D(2018, 1, 6, hour, minute)) for hour in range(24) for minute in (0, 30, 59))
    assert not is_open(CME, D(2018, 1, 7, 22, 59)) and is_open(CME, D(2018, 1, 7, 23))  # Sunday 17:00 CST


def test_friday_close_and_sunday_open_in_standard_time():
    # 2018-01: Chicago keeps CST (UTC-6): the week closes Friday 16:00 CT = 22:00 UTC, opens Sunday 17:00 CT = 23:00
    assert is_open(CME, D(2018, 1, 5, 21, 59)) and not is_open(CME, D(2018, 1, 5, 22))
    assert not is_open(CME, D(2018, 1, 7, 22, 59)) and is_open(CME, D(2018, 1, 7, 23))
    assert last_close(CME, D(2018, 1, 7, 23)) == D(2018, 1, 5, 22)


def test_daylight_saving_time_moves_the_hours_an_hour_earlier_in_utc():
    # DST starts Sunday 2018-03-11 (CDT, UTC-5): that Sunday opens at 22:00 UTC, the next Friday closes at 21:00
    assert not is_open(CME, D(2018, 3, 11, 21, 59)) and is_open(CME, D(2018, 3, 11, 22))
    assert is_open(CME, D(2018, 3, 16, 20, 59)) and not is_open(CME, D(2018, 3, 16, 21))
    # and back on Sunday 2018-11-04: Friday 11-02 still closes at 21:00 UTC, that Sunday opens at 23:00 UTC
    assert is_open(CME, D(2018, 11, 2, 20, 59)) and not is_open(CME, D(2018, 11, 2, 21))
    assert not is_open(CME, D(2018, 11, 4, 22, 59)) and is_open(CME, D(2018, 11, 4, 23))


def test_daily_halt_monday_to_thursday():
    # winter: 16:00-17:00 CT = 22:00-23:00 UTC
    assert is_open(CME, D(2018, 1, 8, 21, 59))
    assert not is_open(CME, D(2018, 1, 8, 22)) and not is_open(CME, D(2018, 1, 8, 22, 59))
    assert is_open(CME, D(2018, 1, 8, 23))
    assert not is_open(CME, D(2018, 1, 11, 22, 59)) and is_open(CME, D(2018, 1, 11, 23))  # Thursday
    assert last_close(CME, D(2018, 1, 11, 22, 30)) == D(2018, 1, 11, 22)
    # summer: 21:00-22:00 UTC
    assert not is_open(CME, D(2018, 3, 12, 21)) and is_open(CME, D(2018, 3, 12, 22))
    assert is_open(CME, D(2018, 3, 12, 20, 59))


def test_daily_bars_of_a_week():
    # bars open at 00:00 UTC: Monday-Friday opens are in a session, Saturday's and Sunday's are not
    opens = [D(2018, 1, 1 + k) for k in range(7)]  # Monday 2018-01-01 .. Sunday 2018-01-07
    assert [is_open(CME, t) for t in opens] == [True, True, True, True, True, False, False]
    # check times: each bar's close, Friday's at the week's close, none on Saturday
    checks = [check_time(CME, t, D(2018, 1, 2 + k)) for k, t in enumerate(opens)]
    assert checks == [D(2018, 1, 2), D(2018, 1, 3), D(2018, 1, 4), D(2018, 1, 5), D(2018, 1, 5, 22), None,
                      D(2018, 1, 8)]


def test_hours_of_the_trading_week_count_the_halt_not_the_weekend():
    assert add_week_hours(CME, D(2018, 1, 2), 24) == D(2018, 1, 3)  # Tuesday: the halt counts
    assert add_week_hours(CME, D(2018, 1, 5), 24) == D(2018, 1, 8, 1)  # Friday 00:00: 22 h, then 2 from Sunday
    assert add_week_hours(CME, D(2018, 1, 5, 22), 24) == D(2018, 1, 8, 23)  # from Friday's close
    assert add_week_hours(CME, D(2018, 1, 6, 12), 1) == D(2018, 1, 8)  # from the weekend: counted from the open
    assert add_week_hours(CME, D(2018, 3, 9), 24) == D(2018, 3, 12)  # over the DST switch: 22 h + 2 h from 22:00


def test_unknown_calendar_is_an_error_naming_the_known_ones():
    with pytest.raises(ConfigError) as info:
        is_open("cme_globx", D(2018, 1, 1))
    assert str(info.value) == ("trading_hours='cme_globx' is not a known trading calendar; choose one of: "
                               "cme_globex (or leave it out: the market never closes). Did you mean 'cme_globex'?")
    assert list(sessions.CALENDARS) == ["cme_globex"]


def test_every_expiry_of_both_cycles_falls_inside_a_session():
    # cash settlement at the close of the bar holding the expiry needs no open market, but both cycles' expiry
    # times (Friday 08:00 UTC and 16:00 UTC) are inside Friday's session anyway, in winter and in summer
    import pandas as pd

    from brokers.dated import expiries

    # 8 years of last Fridays (32 quarterly, 96 monthly) and the first after the range, which its last bar needs
    for cycle, count in (("quarterly", 33), ("monthly", 97)):
        stamps = expiries(pd.Timestamp("2018-01-01", tz="UTC"), pd.Timestamp("2025-12-31", tz="UTC"), cycle)
        assert len(stamps) == count and all(t.day_name() == "Friday" for t in stamps)
        assert all(is_open(CME, t.tz_localize(None).to_pydatetime()) for t in stamps)
