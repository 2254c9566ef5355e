"""Tenants, users and authentication (JWT), and the tenant scoping of every query."""
