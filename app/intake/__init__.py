"""The submitter's side: tips, attachments and follow-up, served by the public intake app."""
