"""The tracking service: a run's lifecycle in one kernel (start, stop, status), behind the magics."""
