"""Benchmarks of gitopsd against the sandbox, with a bastion-host baseline in the same run.

``python -m bench.run --apps N --objects M`` (``make bench``, ``make bench-full``).
"""
