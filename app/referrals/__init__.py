"""Referrals: a verified case handed to a partner organisation or the police as a sealed, provable bundle."""
