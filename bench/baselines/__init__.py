"""
The naive servers netdemos is measured against: the examples from Twisted's
homepage, changed only to take their port from the command line and to bind
127.0.0.1.  They are run as plain scripts (C{python bench/baselines/X.py PORT}),
never imported by the bench.
"""
