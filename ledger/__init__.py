"""The pure core: codec, hashing, events, rules, state, Merkle log, blocks.

Nothing in this package does I/O, reads a clock or draws randomness (STYLE §1).
"""
