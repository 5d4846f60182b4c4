"""The audit log: every privileged action as a leaf of a Merkle tree with signed tree heads."""
