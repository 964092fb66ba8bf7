"""The auditor's view of the audit log: the JSON API and the staff pages that read and verify it."""
