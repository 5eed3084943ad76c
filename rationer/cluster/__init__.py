"""``rationer cluster up``: the gateway as several replicas of every service on loopback (issue 16)."""
