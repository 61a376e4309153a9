"""Evidence sealed: runner identity, receipts, bundles and CIDs, IPFS, the transparency log."""
