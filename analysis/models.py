"""Verdicts and alerts (see the missing-vote analyzer)."""
