"""Settings: the config's dataclasses, the grid of runs it expands into, and its validation.

Everything here runs at DAG-build time, before any job, so a bad value stops the run with one line
naming its key; jobs receive their settings back as JSON (`to_json`).
"""
