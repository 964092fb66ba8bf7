"""Staff identity: accounts, roles and permissions, two-factor login and sessions."""
