"""Checkpoint files (safe load, atomic write), versioned upgrades of old ones, storage (local or s3://), and restoring a run from one."""
