"""Campaigns and their ``campaign.created`` event; execution comes from a plugin."""
