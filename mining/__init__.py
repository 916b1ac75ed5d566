"""Mining economics as plain, typed functions and small classes: subsidy schedules, hashprice, fleets,
power and hosting costs, curtailment, depreciation, equipment and coin-collateralised loans.

May import numpy and pandas only: no backtrader, no matplotlib. The strategies plug it into backtrader.
"""
