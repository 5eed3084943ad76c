"""The slm_worker service."""
