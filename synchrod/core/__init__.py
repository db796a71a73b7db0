"""The pure core: decisions with no I/O (quality, placement, path safety,
filters, naming, back-off, planning). Everything here is unit-tested
exhaustively; the I/O modules and the cycle orchestrator build on it."""
