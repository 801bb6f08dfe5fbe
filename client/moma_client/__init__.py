"""MoMa client: train, predict, contribute and compose modules from a lab's own machine."""
