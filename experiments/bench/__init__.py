"""Benchmarks: each module here measures one thing and prints its figures (never a test).

`python -m experiments.bench` lists them; `python -m experiments.bench.NAME --help` runs one.
Figures, with date, machine and command, go to BENCHMARKS.md.
"""
