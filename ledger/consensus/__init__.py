"""Sans-I/O consensus: replicas take messages and ticks and return actions.

Nothing in this package may import asyncio, plyvel, time or web3 (a test checks it).
"""
