"""Shared web plumbing for both apps: security headers, bounded body reading, pages."""
