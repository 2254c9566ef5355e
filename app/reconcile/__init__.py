"""Matching a tenant's internal ledger against bank and switch files.

``service`` enqueues and runs reconciliations and reads their breaks; ``engine`` is the
set-based matching; ``rules`` finds each source plugin's matching rules; ``job`` is the
``reconcile`` job kind and ``cli`` the ``fairq reconcile`` command.
"""
