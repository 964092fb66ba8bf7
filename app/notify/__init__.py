"""Staff notifications: content-free notices by e-mail and webhook, and the channels that carry them."""
