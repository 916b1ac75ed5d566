"""Speed and memory measurements (``python benchmarks/run.py``): scripts that print ratios, never tests.

May import everything in the project; nothing imports it.
"""
