"""Labels: an organisation's own words for reports and cases, sealed like their content."""
