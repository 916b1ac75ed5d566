"""backtrader strategies: the miner base strategy (mining revenue, costs, loans, treasury) and the hedge
policies users compare, with a registry of policy names, parameters, defaults and units.

May import backtrader (through ``minehedge.compat``), brokers, mining and data; never matplotlib.
"""
