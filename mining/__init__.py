"""Mining economics as plain, typed functions and small classes: subsidy schedules, hashprice, fleets,
power and hosting costs, curtailment, depreciation, equipment and coin-collateralised loans.

May import numpy and pandas only: no backtrader, no matplotlib. The strategies plug it into backtrader.
"""

from mining.fleet import (
    Deployment,
    Fleet,
    Retirement,
    breakeven_coin_price,
    breakeven_power_price,
    deploy,
    hashprice_market_value,
    parse_fleet,
    per_bar,
    retire,
    trailing_hashprice,
)
from mining.hardware import HardwareSpec, custom_spec, get_model, known_models, load_catalog, resolve_spec
from mining.loans import (
    CoinLoan,
    EquipmentLoan,
    LoanStep,
    amortisation_schedule,
    annuity_payment,
    filing_example_loan,
    ltv_from_collateral_ratio,
)
from mining.revenue import (
    btc_coins_per_th_day,
    btc_subsidy,
    btc_subsidy_array,
    eth_block_reward,
    eth_coins_per_mh_day,
    expected_blocks_per_day,
    fpps_payout,
    network_hashprice,
    per_th_to_per_ph,
    smoothed_fees_per_block,
)

__all__ = [
    "CoinLoan", "Deployment", "EquipmentLoan", "Fleet", "HardwareSpec", "LoanStep", "Retirement",
    "amortisation_schedule", "annuity_payment", "breakeven_coin_price", "breakeven_power_price",
    "btc_coins_per_th_day", "btc_subsidy", "btc_subsidy_array", "custom_spec", "deploy", "eth_block_reward",
    "eth_coins_per_mh_day", "expected_blocks_per_day", "filing_example_loan", "fpps_payout", "get_model",
    "hashprice_market_value", "known_models", "load_catalog", "ltv_from_collateral_ratio",
    "network_hashprice",
    "parse_fleet", "per_bar", "per_th_to_per_ph", "resolve_spec", "retire", "smoothed_fees_per_block",
    "trailing_hashprice",
]
