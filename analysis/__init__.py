"""Analysis of simulated cohorts: metrics, validation, sensitivity indices, figures and reports.

Analysis reads outputs (tables and arrays of outcomes); it never reaches into the engine's state.
"""
