"""Per-destination delivery queues with retries, and the operator view of them."""
