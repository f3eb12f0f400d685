"""Memory: the small-model ledger, memory at scale, and the budget checked before allocating."""
