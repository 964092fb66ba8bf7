"""Key custody: the intake key versions, their recovery wraps and the grants that seal them to
staff members' personal keys. Below identity: it knows accounts by id only (docs/architecture.md)."""
