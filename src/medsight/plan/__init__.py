"""Dataset fingerprint and the editable plan (plans.json) derived from it."""
