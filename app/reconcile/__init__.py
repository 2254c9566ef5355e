"""Matching a tenant's internal ledger against bank and switch files."""
