"""The ledger's SQL operations, sans-IO (the convention is in ``common``).

``common``: row shapes, dialects, key/price/budget reads every operation
shares; ``data``: authorize, commit, release, headroom, sweep; ``cache_hits``:
usage events without a reservation; ``admin``: control plane and reports.
"""
