"""Sweeps: configs (what to run), plan (runs from budgets and sizes), runner (execute, resume,
retry), results (the table), sweep (the `lm-sweep` command)."""
