"""advcal's foundation: what every other layer may use and which uses nothing of advcal.

errors (one family), argument validation (one idiom), counter-based random numbers, atomic
file writes, devices, the logits / probabilities contract, and the process-level helpers
(torchvision's operator shim, the allocator setting of the command line). It imports only
the standard library, numpy and torch.
"""
