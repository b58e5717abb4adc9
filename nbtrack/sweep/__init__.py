"""Sweeps: a notebook run once per point of a parameter grid (or of an Optuna search), each trial
an ordinary tracked run in its own isolated workspace, nested under one parent MLflow run.

:mod:`~nbtrack.sweep.service` (``run_trial``, ``sweep``) is the entry point;
:mod:`~nbtrack.sweep.parameters` reads a notebook's ``parameters`` cell and the ``-p`` space.
"""
