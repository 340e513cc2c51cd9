"""Test-wide settings."""

import torch

# The tests work on small tensors, where intra-op threading costs more than it gains and makes run
# times swing with machine load (softmax on a few thousand rows: ~0.01 ms on one thread, ~20 ms on
# two threads of a busy 2-core machine).
torch.set_num_threads(1)
