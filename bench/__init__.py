"""
Benchmarks for netdemos: each service under load, against the naive Twisted
homepage example it improves on, and an asyncio peer that shows the load
generator's own ceiling.  Run C{python -m bench --help}.
"""
