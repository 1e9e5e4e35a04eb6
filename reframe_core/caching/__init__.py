"""Layer caching of an unmodified network: cut discovery (torch.fx) and the cached model."""
