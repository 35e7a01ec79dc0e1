"""Check families: what to probe between which endpoints, and how to judge the answers.

Each module exposes ``NAME``, ``plan(run_plan) -> list of (src, dst, vni)`` (known before anything
is built, so pytest can collect one test per pair) and ``async run(session) -> list[CheckResult]``.
"""
