"""Files a user keeps: event recordings (load / save) and figures (plots)."""
