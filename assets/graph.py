"""Access-graph assets (derived from the raw snapshot); filled in with the access-graph builder."""
