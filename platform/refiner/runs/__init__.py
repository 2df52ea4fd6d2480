"""What every job shares: exit statuses and bad input (cli), failures, provenance, the run plan and summary, the tracker protocol."""
