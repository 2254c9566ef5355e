"""Jobs, the fair dispatcher, retries, dead letters and periodic work."""
