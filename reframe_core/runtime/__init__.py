"""Running a workload frame by frame: where the network runs (placement) and the render-loop session."""
