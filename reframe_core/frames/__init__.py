"""Frame data: captured buffers, camera hints, motion from depth, warping, dataset reading, synthetic frames."""
