"""Building a node with the services that run beside it: the one place they are put together.

The node knows nothing of anchoring; the anchoring service reaches the node through
`ledger.anchor.port.AnchorNode`. Here the service is built for the node (when the config has an
`ethereum` section) and attached, so the node starts it, stops it and shows its status; an observer's
follower (`ledger.observer`), the private data service (`ledger.private.service`) and the fetch of older
blocks of a node that joined by state sync (`ledger.snapshot.history`) likewise.
"""

from __future__ import annotations

from ledger.config import NodeConfig
from ledger.node import Node
from ledger.observer import Follower


def build_node(config: NodeConfig) -> Node:
    node = Node(config)
    if config.ethereum is not None:
        from ledger.anchor.service import AnchorService  # imports web3: only when anchoring is on

        node.anchoring = AnchorService(node, config.ethereum)
    if config.observer is not None:  # role "observer" (config.py refuses one without the other)
        follower = node.follower = Follower(node, config.observer)
        node.metrics.expose_gauges("ledger_observer", "An observer's validators: answering lately, bad blocks "
                                   "they served, failed requests", follower.gauges)
    from ledger.private.service import LinkSources, PrivateData, Sources

    sources: Sources = LinkSources(node)
    if config.observer is not None:  # no peer links: the validators' HTTP, with requests signed by the node key
        from ledger.private.http_fetch import HttpSources

        sources = HttpSources(node.key, node.genesis.chain_id, config.observer.validators)
    node.private = PrivateData(node, node.key.id, config.data_dir / "private.db", sources)
    if config.sync.history == "full" and node.chain.base > 0:
        from ledger.snapshot.history import HistoryFetch

        history = node.history = HistoryFetch(node.chain, config.sync_sources(), config.sync.history_batch)
        node.metrics.expose_gauges("ledger_history", "Older blocks of a node that joined by state sync: the oldest "
                                   "held, those fetched by this process, batches refused", history.gauges)
    return node
