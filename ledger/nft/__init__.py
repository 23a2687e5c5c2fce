"""Asset tokens (ERC-721/4907/5192 semantics) and data-rights licences (ERC-5218/5585) as state modules."""
