"""The notification outbox: what happened, written in the same transaction as the event itself."""
