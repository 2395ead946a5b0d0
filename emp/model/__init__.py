"""emp's pure model: jobs, requirements, matching, ordering, retry policy and events.

Stdlib and pydantic only: nothing here talks to Redis, the network, NVML or an event loop, so every
decision made here is tested without any of them (``tests/unit``).
"""
