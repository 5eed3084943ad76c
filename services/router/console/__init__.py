"""The FinOps console pages served by the router's HTTP door."""
