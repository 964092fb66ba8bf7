"""Key custody: the organisation's intake key pair, its grants to staff, and its recovery wrap."""
