"""The scenario library: TOML files, one world each, shipped as package data.

This package holds no code. It makes ``scenarios/`` part of an installed alliancesim, so
:func:`sim.load_scenario` finds the library by name (through :mod:`importlib.resources`) whether the
package runs from its checkout or from a wheel installed anywhere.
"""
