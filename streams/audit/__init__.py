"""What audits: offline engines over a history (simulate, replay, explain, totals, export)."""
