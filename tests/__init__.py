"""The alliancesim test suite (a package, so that ``python -m tests.refresh_baseline`` works)."""
