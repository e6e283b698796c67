"""Serving signatures and atomic SavedModel export."""
