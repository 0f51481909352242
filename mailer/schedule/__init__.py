"""Scheduling: when blasts start, and the long-running service that starts them."""
