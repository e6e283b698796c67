"""Serving signatures and the atomic SavedModel export."""
