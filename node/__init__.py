"""The node runtime: storage, mempool, block production.  Depends on ``ledger``."""
