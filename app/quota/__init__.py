"""Plans, token buckets, concurrency caps, quotas, usage metering and the gate middleware."""
