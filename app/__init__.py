"""Daylight: secure tip intake and case management for reports of transnational repression."""
