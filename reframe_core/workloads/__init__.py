"""The workloads (SS, FE): one file each, and their registry."""
